// `contributes.configuration`: a JSON Schema per setting, as in VS Code's package.json. Only a
// subset of JSON Schema is accepted, and unknown keywords are refused: zod's fromJSONSchema ignores
// keywords it does not know, so a misspelt `minimun` would otherwise check nothing.
import { z } from 'zod'
import { PatchswarmError } from '../../lib/errors.js'

const TYPES = ['string', 'number', 'integer', 'boolean', 'array', 'object', 'null'] as const

export interface PropertySchema {
  type?: typeof TYPES[number] | Array<typeof TYPES[number]>
  title?: string
  description?: string
  markdownDescription?: string
  default?: unknown
  enum?: unknown[]
  const?: unknown
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  exclusiveMaximum?: number
  minLength?: number
  maxLength?: number
  pattern?: string
  format?: string
  items?: PropertySchema
  minItems?: number
  maxItems?: number
  properties?: Record<string, PropertySchema>
  required?: string[]
  additionalProperties?: boolean | PropertySchema
}

const count = z.number().int().nonnegative()

export const PropertySchemaSchema: z.ZodType<PropertySchema> = z.lazy(() => z.strictObject({
  type: z.union([z.enum(TYPES), z.array(z.enum(TYPES)).min(1)]).optional(),
  title: z.string().optional(),
  description: z.string().optional(),
  markdownDescription: z.string().optional(),
  default: z.unknown().optional(),
  enum: z.array(z.unknown()).min(1).optional(),
  const: z.unknown().optional(),
  minimum: z.number().optional(),
  maximum: z.number().optional(),
  exclusiveMinimum: z.number().optional(),
  exclusiveMaximum: z.number().optional(),
  minLength: count.optional(),
  maxLength: count.optional(),
  pattern: z.string().refine(isRegExp, 'not a valid regular expression').optional(),
  format: z.enum(['uri', 'email', 'uuid', 'date-time', 'date', 'ipv4', 'ipv6']).optional(),
  items: PropertySchemaSchema.optional(),
  minItems: count.optional(),
  maxItems: count.optional(),
  properties: z.record(z.string(), PropertySchemaSchema).optional(),
  required: z.array(z.string()).optional(),
  additionalProperties: z.union([z.boolean(), PropertySchemaSchema]).optional()
}))

const SETTING_NAME = /^[A-Za-z][\w-]*(\.[A-Za-z][\w-]*)+$/

export const ConfigurationSchema = z.strictObject({
  title: z.string().optional(),
  properties: z.record(z.string(), PropertySchemaSchema).superRefine((props, ctx) => {
    for (const key of Object.keys(props)) {
      if (!SETTING_NAME.test(key)) ctx.addIssue({ code: 'custom', path: [key], message: 'a setting is named section.key' })
    }
  })
})
export type ConfigurationContribution = z.infer<typeof ConfigurationSchema>

function isRegExp (s: string): boolean {
  try { RegExp(s, 'u'); return true } catch { return false }
}

/** A compiled setting: its zod validator and its default. */
export interface Setting {
  key: string
  schema: PropertySchema
  validate: z.ZodType
}

/** Compiles each setting; returns the problems as [path below the property, message]. */
export function compileSettings (conf: ConfigurationContribution): { settings: Map<string, Setting>, problems: Array<[string[], string]> } {
  const settings = new Map<string, Setting>()
  const problems: Array<[string[], string]> = []
  for (const [key, schema] of Object.entries(conf.properties)) {
    let validate: z.ZodType
    try {
      validate = z.fromJSONSchema(schema as z.core.JSONSchema.JSONSchema)
    } catch (err) {
      problems.push([[key], (err as Error).message])
      continue
    }
    if (schema.default !== undefined) {
      const r = validate.safeParse(schema.default)
      if (!r.success) problems.push([[key, 'default'], describeIssues(r.error.issues)])
    }
    settings.set(key, { key, schema, validate })
  }
  return { settings, problems }
}

function describeIssues (issues: z.core.$ZodIssue[]): string {
  return issues.map((i) => (i.path.length > 0 ? `${formatPath(i.path)}: ` : '') + i.message).join('; ')
}

/** `a.b[0]["x.y"]`: how every message of the extension host names a field. */
export function formatPath (path: ReadonlyArray<PropertyKey>): string {
  let out = ''
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`
    else if (typeof p === 'string' && /^[A-Za-z_$][\w$-]*$/.test(p)) out += out === '' ? p : `.${p}`
    else out += `[${JSON.stringify(String(p))}]`
  }
  return out
}

/**
 * The settings of one extension as the user set them, checked against its schemas. A value that does
 * not fit is BAD_CONFIG naming the setting: the extension is not started with settings it cannot use.
 */
export class Configuration {
  readonly #settings: Map<string, Setting>
  readonly #values = new Map<string, unknown>()

  constructor (settings: Map<string, Setting>, user: Readonly<Record<string, unknown>>, label: string) {
    this.#settings = settings
    const problems: string[] = []
    for (const [key, s] of settings) {
      if (!Object.hasOwn(user, key)) continue
      const r = s.validate.safeParse(user[key])
      if (r.success) this.#values.set(key, r.data)
      else problems.push(`${key}: ${describeIssues(r.error.issues)}`)
    }
    if (problems.length > 0) throw PatchswarmError.BAD_CONFIG(`${label}: ${problems.join('; ')}`)
  }

  keys (): string[] {
    return [...this.#settings.keys()]
  }

  /** The user's value, else the schema's default (a copy: callers cannot change what others read). */
  get<T = unknown> (key: string): T | undefined {
    const s = this.#settings.get(key)
    if (s === undefined) throw PatchswarmError.BAD_ARGUMENT(`${JSON.stringify(key)} is not a setting this extension contributes (${this.keys().join(', ') || 'none'})`)
    const v = this.#values.has(key) ? this.#values.get(key) : s.schema.default
    return v === undefined ? undefined : structuredClone(v) as T
  }
}
