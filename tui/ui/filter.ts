// The `/` filter: a case-insensitive regular expression; a leading `!` keeps what does NOT match.
// Text that is not a valid expression is matched literally, so typing `acme(` half-way still filters.

export interface Filter {
  /** What the admin typed, `!` included. */
  readonly text: string
  readonly inverted: boolean
  /** True when the pattern was not a valid expression and is matched as plain text. */
  readonly literal: boolean
  test (text: string): boolean
}

/** `null` for an empty filter (`''` or a lone `!`): nothing to filter by. */
export function compileFilter (text: string): Filter | null {
  const inverted = text.startsWith('!')
  const pattern = inverted ? text.slice(1) : text
  if (pattern === '') return null
  let re: RegExp
  let literal = false
  try {
    re = new RegExp(pattern, 'i')
  } catch {
    re = new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i')
    literal = true
  }
  return { text, inverted, literal, test: (s) => re.test(s) !== inverted }
}
