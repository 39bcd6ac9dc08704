// `when` clauses of keybindings and views, a subset of VS Code's: `view == rollouts && !readonly`.
// Parsed at manifest validation so a typo is reported before any code loads; the view layer
// evaluates the parsed form against its context keys on each key press.
//
//   or      := and ('||' and)*
//   and     := unary ('&&' unary)*
//   unary   := '!' unary | primary
//   primary := '(' or ')' | key (('==' | '!=') value)?
//   value   := 'quoted string' | word          (true, false and numbers compare as written)

export type WhenExpr =
  | { op: 'key', key: string }
  | { op: 'eq' | 'ne', key: string, value: string }
  | { op: 'not', expr: WhenExpr }
  | { op: 'and' | 'or', left: WhenExpr, right: WhenExpr }

const TOKEN = /\s*(?:(&&|\|\||==|!=|!|\(|\))|'([^']*)'|([A-Za-z0-9_.:/-]+))/y
const MAX_LENGTH = 512

type Token = { kind: 'op', text: string } | { kind: 'word', text: string, quoted: boolean }

function tokenize (src: string): Token[] {
  const out: Token[] = []
  TOKEN.lastIndex = 0
  while (TOKEN.lastIndex < src.length) {
    if (/^\s*$/.test(src.slice(TOKEN.lastIndex))) break
    const at = TOKEN.lastIndex
    const m = TOKEN.exec(src)
    if (!m) throw new Error(`unexpected ${JSON.stringify(src.slice(at).trimStart().slice(0, 10))} at ${at}`)
    if (m[1] !== undefined) out.push({ kind: 'op', text: m[1] })
    else if (m[2] !== undefined) out.push({ kind: 'word', text: m[2], quoted: true })
    else out.push({ kind: 'word', text: m[3]!, quoted: false })
  }
  return out
}

/** Parses a clause; throws an Error whose message says what is wrong (the caller names the field). */
export function parseWhen (src: string): WhenExpr {
  if (src.length > MAX_LENGTH) throw new Error(`longer than ${MAX_LENGTH} characters`)
  const tokens = tokenize(src)
  let i = 0
  const peek = () => tokens[i]
  const isOp = (text: string) => peek()?.kind === 'op' && peek()!.text === text

  const or = (): WhenExpr => {
    let left = and()
    while (isOp('||')) { i++; left = { op: 'or', left, right: and() } }
    return left
  }
  const and = (): WhenExpr => {
    let left = unary()
    while (isOp('&&')) { i++; left = { op: 'and', left, right: unary() } }
    return left
  }
  const unary = (): WhenExpr => {
    if (isOp('!')) { i++; return { op: 'not', expr: unary() } }
    return primary()
  }
  const primary = (): WhenExpr => {
    const t = tokens[i++]
    if (t === undefined) throw new Error('unexpected end')
    if (t.kind === 'op' && t.text === '(') {
      const inner = or()
      if (!isOp(')')) throw new Error('missing )')
      i++
      return inner
    }
    if (t.kind !== 'word' || t.quoted) throw new Error(`expected a context key, got ${JSON.stringify(t.text)}`)
    if (isOp('==') || isOp('!=')) {
      const op = peek()!.text === '==' ? 'eq' : 'ne'
      i++
      const v = tokens[i++]
      if (v?.kind !== 'word') throw new Error(`expected a value after ${op === 'eq' ? '==' : '!='}`)
      return { op, key: t.text, value: v.text }
    }
    return { op: 'key', key: t.text }
  }

  const expr = or()
  if (i < tokens.length) throw new Error(`unexpected ${JSON.stringify(tokens[i]!.text)}`)
  return expr
}

/** Context keys are compared as strings, as VS Code does; a missing key is falsy and equals nothing. */
export function evaluateWhen (expr: WhenExpr, context: Readonly<Record<string, unknown>>): boolean {
  switch (expr.op) {
    case 'key': return Boolean(context[expr.key])
    case 'eq': return expr.key in context && String(context[expr.key]) === expr.value
    case 'ne': return !(expr.key in context && String(context[expr.key]) === expr.value)
    case 'not': return !evaluateWhen(expr.expr, context)
    case 'and': return evaluateWhen(expr.left, context) && evaluateWhen(expr.right, context)
    case 'or': return evaluateWhen(expr.left, context) || evaluateWhen(expr.right, context)
  }
}
