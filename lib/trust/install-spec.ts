// How an agent installs a released package. Part of the signed release, so the release keys, not
// the console, decide what runs. Every name and path is validated here, before any agent sees it.
// The agent issue extends this union with more installer types.
import { z } from 'zod'
import { UNSAFE, safeRelativePath } from './fields.js'

export const MAX_ARGS = 256
export const MAX_ARG_BYTES = 4096
export const MAX_ENV_VARS = 128
export const MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000

// An argument is passed to a program, never to a shell: any text, but no NUL (it would cut the
// string short in the OS) and bounded.
const argument = z.string().check((ctx) => {
  if (ctx.value.includes('\u0000')) ctx.issues.push({ code: 'custom', message: 'contains a NUL character', input: ctx.value, params: UNSAFE })
  else if (Buffer.byteLength(ctx.value) > MAX_ARG_BYTES) ctx.issues.push({ code: 'custom', message: `is longer than ${MAX_ARG_BYTES} bytes`, input: ctx.value, params: UNSAFE })
})

// argv[0] is a program shipped inside the package (a relative path within it): a release names
// what it carries, not whatever happens to live at an absolute path on the endpoint.
export const argvSchema = z.tuple([safeRelativePath], argument).check((ctx) => {
  if (ctx.value.length > MAX_ARGS) ctx.issues.push({ code: 'custom', message: `has more than ${MAX_ARGS} arguments`, input: ctx.value })
})

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name')

const execInstall = z.strictObject({
  type: z.literal('exec'),
  argv: argvSchema,
  env: z.record(envName, argument).optional(),
  /** Working directory, relative to the package's directory. */
  cwd: safeRelativePath.optional(),
  timeoutMs: z.int().min(1).max(MAX_TIMEOUT_MS).optional(),
  /** Exit codes that mean success; [0] when absent. */
  // Windows exit codes are 32-bit (msiexec 3010 = success, reboot needed), so not just 0-255.
  exitCodes: z.array(z.int().min(-(2 ** 31)).max(2 ** 32 - 1)).min(1).max(256).optional(),
  health: argvSchema.optional(),
  rollback: argvSchema.optional(),
  reboot: z.boolean().optional()
})

const filesInstall = z.strictObject({
  type: z.literal('files'),
  /** Where the package's files go, relative to the agent's install root. */
  target: safeRelativePath
})

export const installSpecSchema = z.discriminatedUnion('type', [execInstall, filesInstall])

export type InstallSpec = z.output<typeof installSpecSchema>
export type ExecInstall = z.output<typeof execInstall>
export type FilesInstall = z.output<typeof filesInstall>
