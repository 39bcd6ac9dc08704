// Plain text tables for the commands' human output.

export type Row = Record<string, unknown>

/** A plain text table: one header line, columns padded to their widest cell. */
export function table (rows: Row[], columns: string[]): string {
  if (rows.length === 0) return '(none)'
  const cell = (v: unknown) => v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v)
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n')
}
