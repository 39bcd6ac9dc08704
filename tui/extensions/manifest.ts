// An extension's package.json, checked before any of its code loads. Every problem is reported as
// BAD_CONFIG naming the file and the field (`…/package.json: contributes.keybindings[0].key: …`),
// all problems of a manifest in one message so an author fixes them in one round.
import fs from 'node:fs/promises'
import path from 'node:path'
import { z } from 'zod'
import { satisfies, valid, validRange } from 'semver'
import { PatchswarmError } from '../../lib/errors.js'
import { ConfigurationSchema, compileSettings, formatPath, type Setting } from './configuration.js'
import { normalizeKey } from '../ui/keys.js'
import { parseWhen } from './when.js'

const NAME = /^[a-z0-9][a-z0-9-]{0,63}$/
/** Command, view and exporter ids: `export.csv`, `topFailing.view`. */
const CONTRIBUTION_ID = /^[A-Za-z][\w-]*(\.[A-Za-z0-9][\w-]*)*$/
const MAIN_EXTENSIONS = ['.js', '.mjs', '.cjs', '.ts', '.mts']

const contributionId = z.string().max(128).regex(CONTRIBUTION_ID, 'letters, digits, "-" and "_" in dot-separated parts')

const ActivationEvent = z.string().regex(
  new RegExp(`^(onStartup|onCommand:${CONTRIBUTION_ID.source.slice(1, -1)}|onView:${CONTRIBUTION_ID.source.slice(1, -1)})$`),
  'onStartup, onCommand:<command> or onView:<view>')

const Contributes = z.strictObject({
  commands: z.array(z.strictObject({
    command: contributionId,
    title: z.string().min(1).max(80),
    category: z.string().max(40).optional(),
    /** Asks for confirmation with the safe choice as default, and is hidden under --readonly. */
    dangerous: z.boolean().default(false)
  })).default([]),
  keybindings: z.array(z.strictObject({
    command: contributionId,
    key: z.string(),
    when: z.string().optional()
  })).default([]),
  views: z.array(z.strictObject({
    id: contributionId,
    name: z.string().min(1).max(40),
    when: z.string().optional()
  })).default([]),
  configuration: ConfigurationSchema.optional(),
  exporters: z.array(z.strictObject({
    id: contributionId,
    title: z.string().min(1).max(80),
    /** What the file the view layer writes is called: `.csv`, `.html`. */
    fileExtension: z.string().regex(/^\.[a-z0-9]{1,10}$/, 'a dot and up to 10 lowercase letters or digits'),
    mimeType: z.string().regex(/^[\w.+-]+\/[\w.+-]+$/).optional()
  })).default([])
})

export const ManifestSchema = z.object({
  name: z.string().regex(NAME, 'lowercase letters, digits and "-", at most 64'),
  publisher: z.string().regex(NAME, 'lowercase letters, digits and "-", at most 64'),
  version: z.string().refine((v) => valid(v) !== null, 'not a semver version'),
  displayName: z.string().max(80).optional(),
  description: z.string().max(400).optional(),
  engines: z.object({
    patchswarm: z.string().refine((r) => validRange(r) !== null, 'not a semver range')
  }),
  main: z.string().min(1).superRefine((main, ctx) => {
    const problem = mainProblem(main)
    if (problem) ctx.addIssue({ code: 'custom', message: problem })
  }),
  activationEvents: z.array(ActivationEvent).default([]),
  contributes: Contributes.default(() => Contributes.parse({}))
})

export type Manifest = z.infer<typeof ManifestSchema>
export type CommandContribution = Manifest['contributes']['commands'][number]
export type KeybindingContribution = Manifest['contributes']['keybindings'][number]
export type ViewContribution = Manifest['contributes']['views'][number]
export type ExporterContribution = Manifest['contributes']['exporters'][number]

function mainProblem (main: string): string | undefined {
  if (path.isAbsolute(main) || /^[A-Za-z]:/.test(main)) return 'must be a path inside the extension folder, not absolute'
  if (main.split(/[\\/]/).includes('..')) return 'must be a path inside the extension folder (no "..")'
  if (main.includes('\0')) return 'contains a NUL byte'
  if (!MAIN_EXTENSIONS.includes(path.extname(main))) return `must end in ${MAIN_EXTENSIONS.join(', ')}`
  return undefined
}

// ---- parsing --------------------------------------------------------------------------------

export interface ParsedManifest {
  /** `publisher.name`, as in VS Code. */
  id: string
  manifest: Manifest
  settings: Map<string, Setting>
  /** Keybindings with their key in the key table's spelling (tui/ui/keys.ts, which also refuses the tmux prefixes). */
  keybindings: Array<KeybindingContribution & { key: string }>
}

type Problem = [ReadonlyArray<PropertyKey>, string]

function fail (label: string, problems: Problem[]): never {
  throw PatchswarmError.BAD_CONFIG(`${label}: ${problems.map(([p, m]) => `${formatPath(p) || '(root)'}: ${m}`).join('; ')}`)
}

/** Zod's issues as [field, message]; an unknown key is named as the field itself. */
function zodProblems (issues: z.core.$ZodIssue[]): Problem[] {
  return issues.flatMap((i): Problem[] => i.code === 'unrecognized_keys'
    ? i.keys.map((k): Problem => [[...i.path, k], 'not a known field'])
    : [[i.path, i.message]])
}

/**
 * Checks a manifest's content (not its files): the schema, then what the schema cannot say (keys,
 * `when` clauses, ids unique within the manifest, onView naming a contributed view, the engine
 * range including `patchswarmVersion`, each setting's JSON Schema and default).
 */
export function parseManifest (raw: unknown, label: string, patchswarmVersion: string): ParsedManifest {
  const r = ManifestSchema.safeParse(raw)
  if (!r.success) fail(label, zodProblems(r.error.issues))
  const m = r.data
  const problems: Problem[] = []
  const c = m.contributes

  if (!satisfies(patchswarmVersion, m.engines.patchswarm, { includePrerelease: true })) {
    problems.push([['engines', 'patchswarm'], `${JSON.stringify(m.engines.patchswarm)} does not include patchswarm ${patchswarmVersion}`])
  }
  const unique = (list: Array<{ [k: string]: unknown }>, field: string, at: string) => {
    const seen = new Set<unknown>()
    list.forEach((item, i) => {
      if (seen.has(item[field])) problems.push([['contributes', at, i, field], `${JSON.stringify(item[field])} appears twice`])
      seen.add(item[field])
    })
  }
  unique(c.commands, 'command', 'commands')
  unique(c.views, 'id', 'views')
  unique(c.exporters, 'id', 'exporters')

  const keybindings = c.keybindings.flatMap((kb, i) => {
    const problemsBefore = problems.length
    let key = kb.key
    try { key = normalizeKey(kb.key) } catch (err) { problems.push([['contributes', 'keybindings', i, 'key'], (err as Error).message]) }
    if (kb.when !== undefined) {
      try { parseWhen(kb.when) } catch (err) { problems.push([['contributes', 'keybindings', i, 'when'], (err as Error).message]) }
    }
    return problems.length === problemsBefore ? [{ ...kb, key }] : []
  })
  c.views.forEach((v, i) => {
    if (v.when === undefined) return
    try { parseWhen(v.when) } catch (err) { problems.push([['contributes', 'views', i, 'when'], (err as Error).message]) }
  })
  m.activationEvents.forEach((e, i) => {
    if (e.startsWith('onView:') && !c.views.some((v) => v.id === e.slice(7))) problems.push([['activationEvents', i], `${e.slice(7)} is not in contributes.views`])
  })

  let settings = new Map<string, Setting>()
  if (c.configuration) {
    const compiled = compileSettings(c.configuration)
    settings = compiled.settings
    for (const [p, msg] of compiled.problems) problems.push([['contributes', 'configuration', 'properties', ...p], msg])
  }

  if (problems.length > 0) fail(label, problems)
  return { id: `${m.publisher}.${m.name}`, manifest: m, settings, keybindings }
}

export interface LoadedManifest extends ParsedManifest {
  folder: string
  /** The real path of `main`, inside the real folder. */
  mainPath: string
}

/** Reads `<folder>/package.json`, parses it, and checks that `main` exists inside the folder. */
export async function loadManifest (folder: string, patchswarmVersion: string): Promise<LoadedManifest> {
  const file = path.join(folder, 'package.json')
  let text: string
  try {
    text = await fs.readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw code === 'ENOENT' ? PatchswarmError.BAD_CONFIG(`${file}: missing`) : PatchswarmError.IO_ERROR(`cannot read ${file}: ${code}`, err)
  }
  let raw: unknown
  try { raw = JSON.parse(text) } catch (err) { throw PatchswarmError.BAD_CONFIG(`${file}: not JSON: ${(err as Error).message}`, err) }
  const parsed = parseManifest(raw, file, patchswarmVersion)

  // A symlink may point out of the folder: compare real paths.
  const realFolder = await fs.realpath(folder)
  let mainPath: string
  try {
    mainPath = await fs.realpath(path.join(folder, parsed.manifest.main))
  } catch {
    throw PatchswarmError.BAD_CONFIG(`${file}: main: ${JSON.stringify(parsed.manifest.main)} does not exist`)
  }
  if (!mainPath.startsWith(realFolder + path.sep)) throw PatchswarmError.BAD_CONFIG(`${file}: main: ${JSON.stringify(parsed.manifest.main)} leads out of the extension folder`)
  if (!(await fs.stat(mainPath)).isFile()) throw PatchswarmError.BAD_CONFIG(`${file}: main: ${JSON.stringify(parsed.manifest.main)} is not a file`)
  return { ...parsed, folder: realFolder, mainPath }
}
