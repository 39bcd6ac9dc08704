// What the agent tells the console about its endpoint: OS, kernel, hardware, disk, the agent's own
// version, the patchswarm packages it installed, and the OS package list where the platform keeps
// one (dpkg, rpm). Collecting never throws: a missing or failing tool leaves its part out.
import os from 'node:os'
import fs from 'node:fs/promises'
import path from 'node:path'
import { PatchswarmError } from '../lib/errors.js'
import { run } from './installers/run.js'

export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000
export const DEFAULT_MAX_OS_PACKAGES = 5000
// Enough for any real package database (Debian with 5000 packages prints ~300 KB).
const PACKAGE_LIST_BYTES = 16 * 1024 * 1024

export interface InstalledPackage {
  name: string
  version: string
}

export interface OsPackage {
  name: string
  version: string
  arch?: string
}

export interface OsPackages {
  manager: 'dpkg' | 'rpm'
  /** Installed packages in all; `items` holds at most the first `max` by name. */
  count: number
  truncated: boolean
  items: OsPackage[]
}

export interface Inventory {
  collectedAt: string
  /** A human name for the OS: PRETTY_NAME of os-release on Linux, else what Node reports. */
  os: string
  platform: string
  arch: string
  /** The kernel's release (os.release(), e.g. 6.1.0-18-amd64). */
  release: string
  /** The kernel's version string (os.version(), e.g. #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1). */
  kernel: string
  hostname: string
  cpus: { model: string, count: number }
  memory: { totalBytes: number, freeBytes: number }
  /** Absent when the file system cannot be asked. */
  disk?: { path: string, totalBytes: number, freeBytes: number }
  agentVersion: string
  packages: InstalledPackage[]
  osPackages?: OsPackages
}

export interface InventoryOptions {
  agentVersion: string
  /** The patchswarm packages the agent installed. */
  installed?: InstalledPackage[]
  /** For each package-manager command. */
  commandTimeoutMs?: number
  /** The file system to report (default: the root of the working directory's drive). */
  diskPath?: string
  maxOsPackages?: number
  /** The PATH package-manager tools are looked up on (default: the runner's safe PATH). */
  toolPath?: string
  signal?: AbortSignal
}

export async function collectInventory (opts: InventoryOptions): Promise<Inventory> {
  if (typeof opts?.agentVersion !== 'string') throw PatchswarmError.BAD_ARGUMENT('collectInventory needs { agentVersion }')
  const diskPath = path.resolve(opts.diskPath ?? path.parse(process.cwd()).root)
  const [osName, disk, osPackages] = await Promise.all([
    osPrettyName(),
    diskOf(diskPath),
    listOsPackages({ timeoutMs: opts.commandTimeoutMs, max: opts.maxOsPackages, toolPath: opts.toolPath, signal: opts.signal })
  ])
  const cpus = os.cpus()
  const inv: Inventory = {
    collectedAt: new Date().toISOString(),
    os: osName ?? fallbackOsName(),
    platform: process.platform,
    arch: process.arch,
    release: os.release(),
    kernel: safe(() => os.version(), ''),
    hostname: safe(() => os.hostname(), ''),
    // Some platforms (and some containers) list no CPUs; parallelism still says how many we may use.
    cpus: { model: cpus[0]?.model.trim() || 'unknown', count: cpus.length || os.availableParallelism() },
    memory: { totalBytes: os.totalmem(), freeBytes: os.freemem() },
    agentVersion: opts.agentVersion,
    packages: (opts.installed ?? []).map((p) => ({ name: p.name, version: p.version }))
  }
  if (disk) inv.disk = disk
  if (osPackages) inv.osPackages = osPackages
  return inv
}

export interface ListOsPackagesOptions {
  timeoutMs?: number | undefined
  max?: number | undefined
  toolPath?: string | undefined
  signal?: AbortSignal | undefined
}

/** dpkg's list if dpkg-query runs and knows packages, else rpm's, else undefined. */
export async function listOsPackages (opts: ListOsPackagesOptions = {}): Promise<OsPackages | undefined> {
  for (const manager of ['dpkg', 'rpm'] as const) {
    const list = await queryManager(manager, opts)
    if (list && list.count > 0) return list
  }
  return undefined
}

const QUERIES = {
  // ${Status} filters out packages that are removed but still have config files (state "rc").
  dpkg: ['dpkg-query', '-W', '-f', '${Status}\t${Package}\t${Version}\t${Architecture}\n'],
  // The epoch, when there is one, is part of the version rpm compares (1:2.3-4).
  rpm: ['rpm', '-qa', '--qf', '%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n']
}

async function queryManager (manager: 'dpkg' | 'rpm', opts: ListOsPackagesOptions): Promise<OsPackages | undefined> {
  try {
    const r = await run({
      argv: QUERIES[manager],
      env: opts.toolPath === undefined ? {} : { PATH: opts.toolPath },
      timeoutMs: opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      graceMs: 1000,
      drainMs: 500,
      maxOutputBytes: PACKAGE_LIST_BYTES,
      stderr: 'ignore',
      ...(opts.signal ? { signal: opts.signal } : {})
    })
    if (!r.ok) return undefined
    const all = manager === 'dpkg' ? parseDpkg(r.output) : parseRpm(r.output)
    return boundList(manager, all, opts.max ?? DEFAULT_MAX_OS_PACKAGES, r.droppedBytes > 0)
  } catch {
    return undefined
  }
}

/** Lines of `${Status}\t${Package}\t${Version}\t${Architecture}`; only installed packages. */
export function parseDpkg (text: string): OsPackage[] {
  const out: OsPackage[] = []
  for (const line of text.split('\n')) {
    const f = line.split('\t')
    if (f.length !== 4 || !/ installed$/.test(f[0]!) || !f[1] || !f[2]) continue
    out.push(f[3] ? { name: f[1], version: f[2], arch: f[3] } : { name: f[1], version: f[2] })
  }
  return out
}

/** Lines of `name\t[epoch:]version-release\tarch`. */
export function parseRpm (text: string): OsPackage[] {
  const out: OsPackage[] = []
  for (const line of text.split('\n')) {
    const f = line.split('\t')
    if (f.length !== 3 || !f[0] || !f[1]) continue
    out.push(f[2] && f[2] !== '(none)' ? { name: f[0], version: f[1], arch: f[2] } : { name: f[0], version: f[1] })
  }
  return out
}

function boundList (manager: 'dpkg' | 'rpm', all: OsPackage[], max: number, lostHead: boolean): OsPackages {
  const key = (p: OsPackage) => `${p.name}\t${p.arch ?? ''}`
  all.sort((a, b) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0)
  return { manager, count: all.length, truncated: lostHead || all.length > max, items: all.slice(0, Math.max(0, max)) }
}

async function osPrettyName (): Promise<string | null> {
  if (process.platform !== 'linux') return null
  for (const file of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      const m = /^PRETTY_NAME=(.*)$/m.exec(await fs.readFile(file, 'utf8'))
      if (m) return m[1]!.trim().replace(/^(["'])(.*)\1$/, '$2')
    } catch {
      // next candidate
    }
  }
  return null
}

function fallbackOsName (): string {
  // Windows: os.version() is the product name (Windows 10 Pro); elsewhere the kernel's name.
  return process.platform === 'win32' ? safe(() => os.version(), 'Windows') : `${os.type()} ${os.release()}`
}

async function diskOf (p: string): Promise<Inventory['disk'] | null> {
  try {
    const s = await fs.statfs(p)
    // bavail: what an unprivileged writer can still use, which is what fills up and breaks installs.
    return { path: p, totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize }
  } catch {
    return null
  }
}

function safe<T> (fn: () => T, fallback: T): T {
  try {
    return fn()
  } catch {
    return fallback
  }
}
