// The parts of semver 7 the extension host uses (semver ships no types; drop this file if
// @types/semver is added).
declare module 'semver' {
  export interface RangeOptions { includePrerelease?: boolean, loose?: boolean }
  /** The normalized version, or null when `version` is not a valid semver version. */
  export function valid (version: string): string | null
  /** The normalized range, or null when `range` is not a valid range. */
  export function validRange (range: string): string | null
  export function satisfies (version: string, range: string, options?: RangeOptions): boolean
}
