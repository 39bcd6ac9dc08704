import t from 'tap'
import { canonicalize, parseCanonical, canonicalBytes } from '../../lib/crypto/canonical.js'

t.test('RFC 8785 ordering and number form', async (t) => {
  // From RFC 8785 section 3.2.3 (sorting by UTF-16 code units) and the ES number form.
  t.equal(canonicalize({ b: 1, a: [true, null, 'x'], '\u20ac': 0, '\r': 1, '1': 2, '\ud83d\ude00': 3, '\u00f6': 4 }),
    '{"\\r":1,"1":2,"a":[true,null,"x"],"b":1,"\u00f6":4,"\u20ac":0,"\ud83d\ude00":3}')
  t.equal(canonicalize([1e21, 0.1, -0, 333333333.3333333, 1e-7]), '[1e+21,0.1,0,333333333.3333333,1e-7]')
  t.equal(canonicalize('\u0007\u2028"'), '"\\u0007\u2028\\""')
  t.same(canonicalBytes({ z: 1, a: 2 }), Buffer.from('{"a":2,"z":1}'))
})

t.test('values that are not JSON are refused', async (t) => {
  for (const v of [undefined, NaN, Infinity, () => 1, 10n, { a: undefined }, new Date(0), '\ud800x']) {
    t.throws(() => canonicalize(v), { code: 'BAD_ENCODING' })
  }
})

t.test('parseCanonical accepts only canonical bytes', async (t) => {
  t.same(parseCanonical('{"a":1,"b":[2]}'), { a: 1, b: [2] })
  t.throws(() => parseCanonical('{"b":1,"a":2}'), { code: 'NOT_CANONICAL' })
  t.throws(() => parseCanonical('{"a": 1}'), { code: 'NOT_CANONICAL' })
  t.throws(() => parseCanonical('{"a":1,"a":2}'), { code: 'NOT_CANONICAL' }, 'duplicate keys')
  t.throws(() => parseCanonical('{"a":1.0}'), { code: 'NOT_CANONICAL' })
  t.throws(() => parseCanonical('{"a":'), { code: 'BAD_ENCODING' })
})

// parseCanonical proves the canonical form quickly (JSON.stringify + key order) and asks
// canonicalize only when that does not show it. The reference below is the plain rule: JSON.parse,
// then canonicalize must give the text back. Both must agree on every input, value and error code.
function reference (text: string): unknown {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { code: 'BAD_ENCODING' }
  }
  try {
    return canonicalize(value) === text ? { value } : { code: 'NOT_CANONICAL' }
  } catch (err) {
    return { code: (err as { code?: string }).code }
  }
}

/** A test name in printable ASCII (a raw U+2028 or DEL would break the TAP stream). */
const ascii = (s: string): string => JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)

function same (a: unknown, b: unknown): boolean {
  return JSON.stringify(a, (_, v) => Object.is(v, -0) ? '-0' : v) === JSON.stringify(b, (_, v) => Object.is(v, -0) ? '-0' : v)
}

function outcome (text: string): unknown {
  try {
    return { value: parseCanonical(text) }
  } catch (err) {
    return { code: (err as { code?: string }).code }
  }
}

t.test('parseCanonical agrees with the reference on numbers, strings, keys and structure', async (t) => {
  const texts = [
    // numbers
    '1', '-1', '0', '-0', '1.0', '1.5', '1e2', '1E2', '100', '1e21', '1e+21', '1000000000000000000000', '1e-7', '0.0000001',
    '1e-6', '0.000001', '5e-324', '1e400', '-1e400', '0.1', '0.10', '01', '9007199254740993', '9007199254740992',
    '333333333.3333333', '333333333.33333333', '1.7976931348623157e+308', '[1e400]', '{"a":1e999}', '{"a":-0}', '{"a":0}',
    // strings and escapes
    '"a"', '"\\u0041"', '"A"', '"\\/"', '"/"', '"\\u001f"', '"\\u001F"', '"\\n"', '"\\u000a"', '"\\b"', '"\\u0008"', '"\\t"',
    '"\\u007f"', '"\u007f"', '"\\u2028"', '"\u2028"', '"é"', '"\\u00e9"', '"😀"', '"\\ud83d\\ude00"', '"\\ud800"',
    '"\\uD800"', '"\\udc00x"', '"a\\ud800"', '"\\ud800\\ud800"', '"\\\\ud800"', '"\\\\"', '"\\""', '"\\u0022"', '"\ud800"',
    '"\\u0000"', '"\\ufeff"', '"\ufeff"', '"\\uffff"', '"\uffff"',
    // keys
    '{"a":1,"b":2}', '{"b":2,"a":1}', '{"a":1,"a":2}', '{"a":1,"a":1}', '{"1":1,"b":2}', '{"b":2,"1":1}', '{"10":1,"9":2}',
    '{"9":2,"10":1}', '{"-1":1,"0":2}', '{"0":2,"-1":1}', '{"01":1,"1":2}', '{"1":2,"01":1}', '{"4294967295":1,"4294967294":2}',
    '{"4294967294":2,"4294967295":1}', '{"€":1,"😀":2}', '{"😀":2,"€":1}', '{"😀":1,"\uffff":2}', '{"\uffff":2,"😀":1}',
    '{"\\u0041":1}', '{"A":1}', '{"\\ud800":1}', '{"__proto__":1}', '{"__proto__":{"a":1}}', '{"a":{"__proto__":[]}}',
    '{"constructor":1,"toJSON":2}', '{"toJSON":{}}', '{"":1,"a":2}', '{"a":2,"":1}', '{"\\r":1,"1":2}', '{"1":2,"\\r":1}',
    // structure and white space
    '{}', '[]', '[{}]', 'null', 'true', 'false', ' 1', '1 ', '{ "a":1}', '{"a" :1}', '[1, 2]', '[1,2]', '{"a":[1,{"c":3,"b":2}]}',
    '{"a":[1,{"b":2,"c":3}]}', '\n{}', '{"a":1}\n', '', '{', '[1,]', 'tru', '{"a":1,}', '"\\x41"', "'a'", 'NaN', 'Infinity'
  ]
  for (const text of texts) t.same(outcome(text), reference(text), ascii(text))
})

t.test('parseCanonical agrees with the reference on random documents and their mutations', async (t) => {
  let seed = 12345
  const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
  const strings = ['', 'a', 'b', 'A', '1', '10', '9', '__proto__', 'é', '€', '😀', '\u2028', '\u001f', '"', '\\', '/', '\uffff', 'x y', '-1', '01']
  const numbers = [0, -0, 1, -1, 1.5, 0.1, 1e21, 1e-7, 123456789, 2 ** 53, 5e-324, 1.7976931348623157e308, 100]
  const value = (depth: number): unknown => {
    const r = rand()
    if (depth > 3 || r < 0.3) return pick([...strings, ...numbers, true, false, null] as unknown[])
    if (r < 0.6) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1))
    const o: Record<string, unknown> = {}
    for (let i = Math.floor(rand() * 5); i > 0; i--) Object.defineProperty(o, pick(strings), { value: value(depth + 1), enumerable: true, configurable: true, writable: true })
    return o
  }
  const mutations: Array<(s: string) => string> = [
    (s) => s,
    (s) => s.replace(/([,:])/, '$1 '),
    (s) => s.replace(/\\\\/, '\\u005c'),
    (s) => s.replace(/é/, '\\u00e9'),
    (s) => s.replace(/😀/, '\\ud83d\\ude00'),
    (s) => s.replace(/😀/, '\\ud83d'),
    (s) => s.replace(/\\u001f/, '\\u001F'),
    (s) => s.replace(/(\d)([,\]}])/, '$1.0$2'),
    (s) => s.replace(/1e\+21/, '1000000000000000000000'),
    (s) => s.replace(/:(\d+)/, ':0$1'),
    (s) => s.replace(/"a":/, '"a":1,"a":'),
    (s) => s.replace(/\{"([^"]*)":([^,{}[\]]*),"([^"]*)":/, '{"$3":$2,"$1":'),
    (s) => s.replace(/\{"/, '{"__proto__":0,"'),
    (s) => s.replace(/\{"/, '{"0":0,"'),
    (s) => s.replace(/(,"[^"]*":[^,{}[\]]*)\}/, '$1,"0":0}'),
    (s) => s.slice(0, -1)
  ]
  let checked = 0
  for (let i = 0; i < 3000; i++) {
    let text: string
    try {
      text = canonicalize(value(0))
    } catch {
      continue
    }
    for (const m of mutations) {
      const mutated = m(text)
      const [got, want] = [outcome(mutated), reference(mutated)]
      // The value is compared by its JSON and its keys' order; -0 by itself (JSON writes it as 0).
      if (!same(got, want)) {
        t.strictSame(got, want, `disagree on ${ascii(mutated)}`)
        return
      }
      checked++
    }
  }
  t.ok(checked > 10_000, `${checked} texts`)
})
