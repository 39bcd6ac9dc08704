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
