// The agent's data folder and its configuration (agent.json). One folder holds everything an
// endpoint keeps, so backing up, moving or wiping an agent is one directory:
//
//   agent.json       configuration (this module), written atomically
//   identity.key     the endpoint's Ed25519 key (0600), its identity in the swarm and in reports
//   enrollment.json  enrollment state and certificate (agent/enroll.ts); a file, not the DB, so
//                    `agent status` can read it while the running agent holds the DB's lock
//   db/              LevelDB: pinned root and trusted metadata, jobs, outbox
//   packages/        verified package store
//   work/            staging for downloads and installers
//   install/         default root of the `files` installer
//
// agent.json is written last at enrollment: a folder without it is not enrolled, whatever else
// it holds.
import fs from 'node:fs/promises'
import { constants as fsc } from 'node:fs'
import path from 'node:path'
import { z } from 'zod'
import { validateDetailed } from 'node-cron'
import { PatchswarmError } from '../lib/errors.js'
import { writeAtomic } from '../lib/crypto/keyfile.js'
import { keyid, safeName } from '../lib/trust/fields.js'

export const DEFAULT_DATA_DIR = 'patchswarm-agent'
export const MAX_CONFIG_BYTES = 256 * 1024
export const DEFAULT_CHECK_IN_CRON = '*/15 * * * *'
export const DEFAULT_CHECK_IN_JITTER_SECONDS = 300
export const DEFAULT_INVENTORY_CRON = '30 3 * * *'
export const DEFAULT_REBOOT_COMMAND: readonly string[] = ['systemctl', 'reboot']

export interface AgentPaths {
  dir: string
  config: string
  identity: string
  enrollment: string
  db: string
  packages: string
  work: string
  install: string
  /** Written by the running agent for `agent status`. */
  status: string
}

export function agentPaths (dir: string): AgentPaths {
  const d = path.resolve(dir)
  return {
    dir: d,
    config: path.join(d, 'agent.json'),
    identity: path.join(d, 'identity.key'),
    enrollment: path.join(d, 'enrollment.json'),
    db: path.join(d, 'db'),
    packages: path.join(d, 'packages'),
    work: path.join(d, 'work'),
    install: path.join(d, 'install'),
    status: path.join(d, 'status.json')
  }
}

const cronExpression = z.string().max(256).check((ctx) => {
  const v = validateDetailed(ctx.value)
  if (!v.valid) ctx.issues.push({ code: 'custom', message: `is not a cron expression (${v.errors?.[0]?.message ?? 'invalid'})`, input: ctx.value })
})

const hostPort = z.strictObject({
  host: z.string().min(1).max(253),
  port: z.int().min(1).max(65535)
})

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const

export const agentConfigSchema = z.strictObject({
  org: safeName,
  console: z.strictObject({
    /** The console's enrollment link key (from the token): where enrollment requests go. */
    enrollKey: keyid,
    /** The console's key in the organisation swarm, once known. */
    consoleKey: keyid.optional()
  }),
  /** DHT bootstrap nodes; 'public' means HyperDHT's public ones. */
  bootstrap: z.union([z.literal('public'), z.array(hostPort).min(1).max(64)]),
  /** Address to bind the DHT node to. */
  host: z.string().min(1).max(253).optional(),
  firewalled: z.boolean().optional(),
  /** Root of the `files` installer; relative paths are taken from the data folder. */
  installRoot: z.string().min(1).max(4096),
  /** argv run when a package needs a reboot; never through a shell. */
  rebootCommand: z.array(z.string().min(1).max(4096)).min(1).max(64).default([...DEFAULT_REBOOT_COMMAND]),
  checkIn: z.strictObject({
    cron: cronExpression.default(DEFAULT_CHECK_IN_CRON),
    /** Each check-in waits a random 0…jitterSeconds, so a fleet does not call at one instant. */
    jitterSeconds: z.int().min(0).max(86_400).default(DEFAULT_CHECK_IN_JITTER_SECONDS)
  }).prefault({}),
  inventory: z.strictObject({
    cron: cronExpression.default(DEFAULT_INVENTORY_CRON)
  }).prefault({}),
  logLevel: z.enum(LOG_LEVELS).default('info')
})

export type AgentConfig = z.output<typeof agentConfigSchema>
export type AgentConfigInput = z.input<typeof agentConfigSchema>

/** BAD_CONFIG naming the first offending field, e.g. `agent.json: checkIn.cron: …`. */
export function parseConfig (value: unknown, what = 'agent.json'): AgentConfig {
  const result = agentConfigSchema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const field = issue.path.length === 0 ? '' : issue.path.map(String).join('.').replace(/\.(\d+)(?=\.|$)/g, '[$1]') + ': '
  throw PatchswarmError.BAD_CONFIG(`${what}: ${field}${issue.message}`, result.error)
}

/** The configuration in `dir`, with installRoot made absolute; NOT_FOUND when there is none. */
export async function loadConfig (dir: string): Promise<AgentConfig> {
  const config = await readConfigIfAny(dir)
  if (config === null) throw PatchswarmError.NOT_FOUND(`${agentPaths(dir).config} does not exist: enroll first (patchswarm agent enroll --token …)`)
  return config
}

/** Like loadConfig, but null for a folder without agent.json (not enrolled). */
export async function readConfigIfAny (dir: string): Promise<AgentConfig | null> {
  const { dir: base, config: file } = agentPaths(dir)
  const text = await readSmallFile(file, MAX_CONFIG_BYTES)
  if (text === null) return null
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw PatchswarmError.BAD_CONFIG(`${file} is not valid JSON: ${(err as Error).message}`, err)
  }
  const config = parseConfig(value, file)
  return { ...config, installRoot: path.resolve(base, config.installRoot) }
}

export async function writeConfig (dir: string, config: AgentConfigInput): Promise<void> {
  const checked = parseConfig(config, 'config')
  await writeAtomic(agentPaths(dir).config, JSON.stringify(checked, null, 2) + '\n', 0o600)
}

/**
 * The file's text, or null when it does not exist; IO_ERROR (with the path) when it cannot be read.
 * Shared with the other files of the data folder.
 */
export async function readSmallFile (file: string, maxBytes: number): Promise<string | null> {
  try {
    const stat = await fs.stat(file)
    if (!stat.isFile()) throw PatchswarmError.IO_ERROR(`${file} is not a file`)
    if (stat.size > maxBytes) throw PatchswarmError.IO_ERROR(`${file} is larger than ${maxBytes} bytes`)
    return await fs.readFile(file, 'utf8')
  } catch (err) {
    if (err instanceof PatchswarmError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return null
    throw PatchswarmError.IO_ERROR(`cannot read ${file}: ${code ?? (err as Error).message}`, err)
  }
}

/**
 * IO_ERROR unless `dir` is a writable folder or could be created as one. Writes nothing: it walks
 * up to the nearest existing ancestor and asks the OS whether that may be written.
 */
export async function assertWritableDir (dir: string): Promise<void> {
  const target = path.resolve(dir)
  let at = target
  for (;;) {
    let stat
    try {
      stat = await fs.stat(at)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      const parent = path.dirname(at)
      // ENOTDIR: something above is a file; walking up finds it and names it.
      if ((code === 'ENOENT' || code === 'ENOTDIR') && parent !== at) { at = parent; continue }
      throw PatchswarmError.IO_ERROR(`cannot use ${target} as the agent's data folder: ${at}: ${code ?? (err as Error).message}`, err)
    }
    if (!stat.isDirectory()) throw PatchswarmError.IO_ERROR(`cannot use ${target} as the agent's data folder: ${at} is not a folder`)
    try {
      await fs.access(at, fsc.W_OK | fsc.X_OK)
    } catch (err) {
      throw PatchswarmError.IO_ERROR(`cannot use ${target} as the agent's data folder: ${at} is not writable (${(err as NodeJS.ErrnoException).code})`, err)
    }
    return
  }
}

/** Creates the folder (0700: it holds the identity key) and its subfolders. */
export async function createDataDir (dir: string): Promise<AgentPaths> {
  const p = agentPaths(dir)
  try {
    await fs.mkdir(p.dir, { recursive: true, mode: 0o700 })
    for (const sub of [p.packages, p.work, p.install]) await fs.mkdir(sub, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw PatchswarmError.IO_ERROR(`cannot create the agent's data folder ${p.dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err)
  }
  return p
}
