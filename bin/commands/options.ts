// Option parsers shared by the commands: durations, thresholds, repeatable options.
import { InvalidArgumentError } from 'commander'
import { PatchswarmError } from '../../lib/errors.js'

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400, y: 365 * 86400 }

/** '90d', '12h', '1y' → seconds. */
export function parseDuration (value: string): number {
  const m = /^(\d+)([smhdwy])$/.exec(value.trim())
  if (!m) throw new InvalidArgumentError(`'${value}' is not a duration like 30d, 12h or 1y`)
  const seconds = Number(m[1]) * UNITS[m[2]!]!
  if (seconds <= 0) throw new InvalidArgumentError('a duration must be positive')
  return seconds
}

export function parsePositiveInt (value: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`'${value}' is not a whole number ≥ 1`)
  return n
}

/** For options given several times: --key a --key b. */
export function collect (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

export function addSeconds (date: Date, seconds: number): Date {
  return new Date(date.getTime() + seconds * 1000)
}

/** `host:port,host:port` → a bootstrap list. */
export function parseBootstrap (value: string): Array<{ host: string, port: number }> {
  return value.split(',').map((s) => {
    const m = /^([^:]+):(\d{1,5})$/.exec(s.trim())
    if (!m) throw PatchswarmError.BAD_ARGUMENT(`bootstrap ${JSON.stringify(s)} is not host:port`)
    return { host: m[1]!, port: Number(m[2]) }
  })
}
