import t from 'tap'
import { generateKeyPair, keySigner } from '../../lib/crypto/keys.js'
import { newCertificate, newRoot, serializeEnvelope, signEnvelope } from '../../lib/trust/index.js'
import { signEvent } from '../../lib/report/event.js'
import { buildEvidence, verifyEvidence, EVIDENCE_FORMAT } from '../../lib/report/evidence.js'
import { evidenceFleet, ORG, T0 } from '../../fixtures/evidence-fleet.js'

const short = (keyid: string) => keyid.slice(0, 12) + '…'

t.test('a complete bundle verifies, against its own root or a pinned one', async (t) => {
  const f = await evidenceFleet()
  const text = await f.bundle()
  const r = verifyEvidence(text)
  t.same(r.problems, [])
  t.equal(r.ok, true)
  t.same([r.org, r.endpoints, r.certificates, r.events, r.complete, r.filter], [ORG, 3, 3, 12, true, null])
  t.equal(r.from, '2025-03-01T01:00:00.000Z', 'the earliest agent time')
  t.equal(r.to, '2025-03-01T06:00:00.000Z', 'the latest agent time')
  t.same(r.tenants, { 'msp-1/acme/sales': { endpoints: 2, events: 8 }, 'msp-1/globex': { endpoints: 1, events: 4 } })
  t.equal(r.root.pinned, false)
  t.same(r.notes, [])

  const pinned = verifyEvidence(Buffer.from(text), { root: f.root })
  t.equal(pinned.ok, true)
  t.equal(pinned.root.pinned, true)
  t.same(pinned.notes, [])
})

t.test('the format: a JSON object, one canonical envelope per line', async (t) => {
  const f = await evidenceFleet()
  const text = await f.bundle()
  const parsed = JSON.parse(text)
  t.equal(parsed.format, EVIDENCE_FORMAT)
  t.same(Object.keys(parsed), ['format', 'org', 'generatedAt', 'filter', 'root', 'certificates', 'events', 'seal'])
  const lines = text.split('\n')
  for (const e of f.events) t.ok(lines.includes(serializeEnvelope(e).toString() + ',') || lines.includes(serializeEnvelope(e).toString()), 'an event line is its canonical envelope')
  const again = await f.bundle({ events: [...f.events].reverse().concat(f.events[0]!) })
  t.equal(again, text, 'sorted by endpoint and seq, duplicates written once')
  const pretty = JSON.stringify(parsed, null, 2)
  t.equal(verifyEvidence(pretty).ok, true, 'the layout is for people; any JSON of the same values verifies')
  t.equal(verifyEvidence(await f.bundle({ events: [], certificates: [] })).ok, true, 'an empty bundle is not wrong')
})

t.test('a flipped byte anywhere in an event fails, naming the endpoint and seq', async (t) => {
  const f = await evidenceFleet()
  const text = await f.bundle()
  const target = f.events.find((e) => e.signed.endpoint === f.endpoints[1]!.signer.keyid && e.signed.seq === 3)!
  const line = serializeEnvelope(target).toString()
  const start = text.indexOf(line)
  t.ok(start > 0)
  const who = short(target.signed.endpoint)
  const seqAt = line.indexOf('"seq":3')
  let failures = 0
  for (const mask of [0x01, 0x80]) {
    for (let i = 0; i < line.length; i++) {
      const bytes = Buffer.from(text)
      bytes[start + i]! ^= mask
      let report: string
      try {
        const r = verifyEvidence(bytes)
        if (r.ok) { t.fail(`byte ${i} ^ ${mask} of the event went unnoticed`); continue }
        report = r.problems.join('\n')
      } catch (err) {
        t.equal((err as { code?: string }).code, 'BAD_EVIDENCE')
        report = (err as Error).message
      }
      failures++
      if (!report.includes(who)) t.fail(`byte ${i} ^ ${mask}: the endpoint is not named: ${report}`)
      const inSeq = i >= seqAt && i < seqAt + '"seq":3'.length
      // A flip inside "seq":3 itself may leave the seq unreadable; then the event's place is named.
      if (!/seq 3\b/.test(report) && !(inSeq && /after seq 2|seq \d/.test(report))) t.fail(`byte ${i} ^ ${mask}: seq 3 is not named: ${report}`)
    }
  }
  t.equal(failures, 2 * line.length, 'every flip fails')

  // The usual case, spelled out: a changed time no longer matches the signature.
  const at = text.replace(line, line.replace(target.signed.at, '2025-03-01T03:00:01.000Z'))
  const r = verifyEvidence(at)
  t.equal(r.ok, false)
  t.match(r.problems[0], new RegExp(`^endpoint ${who} seq 3 \\(events\\[\\d+\\]\\): the signature does not match`))
})

t.test('the seal: a flipped byte anywhere outside the events fails', async (t) => {
  const f = await evidenceFleet()
  // Header, root, every certificate and the seal, around one event (the event lines have their own
  // test above; fewer events keep the ~3,000 verifications fast).
  const text = await f.bundle({ events: f.events.slice(0, 1) })
  t.equal(verifyEvidence(text).ok, true)
  const lines = text.split('\n')
  const first = lines.indexOf('"events": [') + 1
  const last = lines.indexOf('],', first) // the events' closing line: the seal follows
  t.same([first > 0, last - first], [true, 1], 'one event line')
  const start = lines.slice(0, first).join('\n').length + 1
  const end = start + lines[first]!.length
  t.equal(Buffer.byteLength(text), text.length, 'ASCII: a character is a byte')
  let failures = 0
  let flips = 0
  for (let i = 0; i < text.length; i++) {
    if (i >= start && i < end) continue
    flips++
    const bytes = Buffer.from(text)
    bytes[i]! ^= 0x01
    try {
      const r = verifyEvidence(bytes)
      if (r.ok) { t.fail(`byte ${i} ('${text[i]}' on line ${text.slice(0, i).split('\n').length}) ^ 0x01 went unnoticed`); continue }
    } catch (err) {
      if ((err as { code?: string }).code !== 'BAD_EVIDENCE') { t.fail(`byte ${i}: ${String(err)}`); continue }
    }
    failures++
  }
  t.ok(flips > 2500, `${flips} flips`)
  t.equal(failures, flips, 'every flip outside the event lines fails')
})

t.test('the seal binds the export time and the filter', async (t) => {
  const f = await evidenceFleet()
  const text = await f.bundle()
  const generatedAt = '"generatedAt": "2025-03-31T00:00:00.000Z"'
  t.ok(text.includes(generatedAt))
  const later = verifyEvidence(text.replace(generatedAt, '"generatedAt": "2025-04-30T00:00:00.000Z"'))
  t.same(later.problems, ['the console\'s seal does not match the bundle\'s generatedAt: it was changed after export'])
  t.same(later.sealedBy, [f.consoleSigner.keyid], 'the console did seal it, as exported')
  t.equal(later.generatedAt, '2025-04-30T00:00:00.000Z', 'the result reports what the bundle says')

  // A complete bundle relabelled as a selection: its gaps would pass as notes.
  const e0 = f.endpoints[0]!.signer.keyid
  const without = f.events.filter((e) => !(e.signed.endpoint === e0 && e.signed.seq === 2))
  const complete = await f.bundle({ events: without })
  const relabelled = verifyEvidence(complete.replace('"filter": null', '"filter": "agent events only"'))
  t.equal(relabelled.ok, false)
  t.same(relabelled.problems, ['the console\'s seal does not match the bundle\'s filter: it was changed after export'])
  // … and a selection relabelled as complete.
  const filtered = await f.bundle({ events: without, filter: 'agent events only' })
  const claimed = verifyEvidence(filtered.replace('"filter": "agent events only"', '"filter": null'))
  t.same(claimed.problems, [
    `endpoint ${short(e0)}: seq 2 is missing, yet the bundle says it holds every event`,
    'the console\'s seal does not match the bundle\'s filter: it was changed after export'
  ], 'the seal\'s problem comes after the items\'')
  const both = verifyEvidence(text.replace(generatedAt, '"generatedAt": "2025-04-30T00:00:00.000Z"').replace('"filter": null', '"filter": "x"'))
  t.match(both.problems.at(-1), 'does not match the bundle\'s generatedAt, filter: it was changed after export')

  // The lists are sealed too: an event taken out (a gap the seqs cannot show: the last one).
  const parsed = JSON.parse(text)
  const count = parsed.events.length
  parsed.events = parsed.events.filter((e: { signed: { endpoint: string, seq: number } }) => !(e.signed.endpoint === e0 && e.signed.seq === 4))
  t.equal(parsed.events.length, count - 1, 'one event taken out')
  t.same(verifyEvidence(JSON.stringify(parsed)).problems, ['the console\'s seal does not match the bundle\'s events: it was changed after export'])
})

t.test('a seal by a key outside the console role, or none, fails', async (t) => {
  const f = await evidenceFleet()
  // The root key is the organisation's, but not a console key.
  const resealed = verifyEvidence(await f.bundle({ sealer: f.rootSigner, generatedAt: new Date('2025-05-01T00:00:00Z') }))
  t.equal(resealed.ok, false)
  t.same(resealed.problems, ['the bundle\'s seal is not signed by the console role of acme (0 of 1 signatures)'])
  t.same(resealed.sealedBy, [])
  const stranger = verifyEvidence(await f.bundle({ sealer: keySigner(generateKeyPair(Buffer.alloc(32, 7))) }))
  t.match(stranger.problems, [/not signed by the console role/])

  const parsed = JSON.parse(await f.bundle())
  const seal = parsed.seal
  delete parsed.seal
  const unsealed = verifyEvidence(JSON.stringify(parsed))
  t.equal(unsealed.ok, false)
  t.same(unsealed.sealedBy, [])
  t.match(unsealed.problems, [/^the bundle has no seal/])
  t.match(verifyEvidence(JSON.stringify({ ...parsed, seal: { ...seal, signatures: [] } })).problems, [/^the bundle's seal is not signed by the console role of acme \(0 of 1 signatures\)$/])
  t.match(verifyEvidence(JSON.stringify({ ...parsed, seal: 'sealed' })).problems, [/^the bundle's seal is not a signed envelope: /])
  const certificate = await signEnvelope({ ...seal.signed, _type: 'certificate' }, [f.consoleSigner])
  t.match(verifyEvidence(JSON.stringify({ ...parsed, seal: certificate })).problems, [/^the bundle's seal is a "certificate" document, not an evidence-seal$/])
  const extra = await signEnvelope({ ...seal.signed, note: 'hi' }, [f.consoleSigner])
  t.match(verifyEvidence(JSON.stringify({ ...parsed, seal: extra })).problems, [/does not match the bundle's "note" \(not a seal field\)/])
})

t.test('a re-indented bundle verifies and names its sealer', async (t) => {
  const f = await evidenceFleet()
  const r = verifyEvidence(JSON.stringify(JSON.parse(await f.bundle()), null, 2))
  t.same(r.problems, [])
  t.equal(r.ok, true)
  t.same(r.sealedBy, [f.consoleSigner.keyid])
  t.same(verifyEvidence(await f.bundle(), { root: f.root }).sealedBy, [f.consoleSigner.keyid], 'against a pinned root too')
})

t.test('gaps: a problem in a complete bundle, listed in a filtered one', async (t) => {
  const f = await evidenceFleet()
  const e0 = f.endpoints[0]!.signer.keyid
  const without = f.events.filter((e) => !(e.signed.endpoint === e0 && (e.signed.seq === 2 || e.signed.seq === 3)))
  const complete = verifyEvidence(await f.bundle({ events: without }))
  t.equal(complete.ok, false)
  t.same(complete.problems, [`endpoint ${short(e0)}: seqs 2–3 are missing, yet the bundle says it holds every event`])
  t.same(complete.gaps, [{ endpoint: e0, from: 2, to: 3 }])

  const filtered = verifyEvidence(await f.bundle({ events: without, filter: 'agent and installed events only' }))
  t.equal(filtered.ok, true)
  t.equal(filtered.complete, false)
  t.same(filtered.gaps, [{ endpoint: e0, from: 2, to: 3 }])
  t.match(filtered.notes.join('\n'), 'filtered bundle (agent and installed events only): 1 gap(s), 2 event(s) not included')

  const late = verifyEvidence(await f.bundle({ events: f.events.filter((e) => e.signed.seq > 1) }))
  t.equal(late.problems.length, 3, 'a complete bundle starts at seq 1 for every endpoint')
  t.match(late.problems[0], 'seq 1 is missing')
})

t.test('duplicates and reordering are problems', async (t) => {
  const f = await evidenceFleet()
  const e2 = f.endpoints[2]!
  const forged = await signEvent(f.event(2, 2, { at: '2025-03-02T00:00:00.000Z' }), e2.signer)
  const twice = verifyEvidence(await f.bundle({ events: [...f.events, forged] }))
  t.equal(twice.ok, false)
  t.match(twice.problems.join('\n'), new RegExp(`endpoint ${short(e2.signer.keyid)} seq 2 \\(events\\[\\d+\\]\\): seq 2 appears twice with different contents`))

  const text = await f.bundle()
  const lines = text.split('\n')
  const i = lines.findIndex((l) => l.includes(`"endpoint":"${e2.signer.keyid}"`) && l.includes('"seq":2,'))
  const copy = [...lines.slice(0, i + 1), lines[i]!, ...lines.slice(i + 1)].join('\n')
  t.match(verifyEvidence(copy).problems.join('\n'), 'seq 2 appears twice (identical copies)')
  const swapped = [...lines]
  ;[swapped[i], swapped[i + 1]] = [swapped[i + 1]!, swapped[i]!]
  t.match(verifyEvidence(swapped.join('\n')).problems.join('\n'), /seq 2 \(events\[\d+\]\): out of order, after seq 3/)
})

t.test('certificates bind each endpoint to its tenant, by the console role', async (t) => {
  const f = await evidenceFleet()
  const [e0, e1] = f.endpoints as [typeof f.endpoints[0], typeof f.endpoints[0]]
  const moved = await signEvent(f.event(0, 5, { tenant: 'msp-1/globex' }), e0.signer)
  const r1 = verifyEvidence(await f.bundle({ events: [...f.events, moved] }))
  t.equal(r1.problems.length, 1)
  t.match(r1.problems[0], new RegExp(`^endpoint ${short(e0.signer.keyid)} seq 5 \\(events\\[\\d+\\]\\): names tenant 'msp-1/globex' but its certificate says 'msp-1/acme/sales'$`))

  // After a move the console issues a second certificate; events under either tenant then verify.
  const second = await signEnvelope(newCertificate({ org: ORG, holder: e0.keyPair.publicKey, tenant: 'msp-1/globex', issued: T0, expires: '2026-01-01T00:00:00Z', version: 2 }), [f.consoleSigner])
  t.equal(verifyEvidence(await f.bundle({ events: [...f.events, moved], certificates: [...f.certificates, second] })).ok, true)

  // A certificate the console did not sign (here: by the endpoint itself) enrolls nobody.
  const selfMade = await signEnvelope(newCertificate({ org: ORG, holder: e1.keyPair.publicKey, tenant: e1.tenant, issued: T0, expires: '2026-01-01T00:00:00Z' }), [e1.signer])
  const certs = f.certificates.map((c) => (c.signed as { holder: string }).holder === e1.signer.keyid ? selfMade : c)
  const r2 = verifyEvidence(await f.bundle({ certificates: certs }))
  t.equal(r2.ok, false)
  t.match(r2.problems[0], `(endpoint ${short(e1.signer.keyid)}): not signed by the console role of acme (0 of 1 signatures)`)
  t.equal(r2.problems.filter((p) => p.includes('no valid enrollment certificate')).length, 4, 'each of its events says so')
  const r3 = verifyEvidence(await f.bundle({ certificates: f.certificates.filter((c) => (c.signed as { holder: string }).holder !== e1.signer.keyid) }))
  t.equal(r3.problems.length, 4, 'no certificate at all')

  // A console-signed certificate edited afterwards (moved to another tenant) no longer verifies.
  const edited = f.certificates.map((c) => (c.signed as { holder: string }).holder === e1.signer.keyid ? { ...c, signed: { ...(c.signed as object), tenant: 'msp-1/globex' } } : c)
  t.match(verifyEvidence(await f.bundle({ certificates: edited })).problems[0], `(endpoint ${short(e1.signer.keyid)}): not signed by the console role`)
  const misshapen = f.certificates.map((c) => (c.signed as { holder: string }).holder === e1.signer.keyid ? { ...c, signed: { ...(c.signed as object), tenant: '../x' } } : c)
  t.match(verifyEvidence(await f.bundle({ certificates: misshapen })).problems[0], `(endpoint ${short(e1.signer.keyid)}): certificate.tenant: tenant path segment`)

  const origin = await signEnvelope(newCertificate({ org: ORG, holder: e1.keyPair.publicKey, role: 'origin', tenant: '', issued: T0, expires: '2026-01-01T00:00:00Z' }), [f.consoleSigner])
  t.match(verifyEvidence(await f.bundle({ certificates: [...f.certificates, origin] })).problems.join('\n'), 'a certificate for an origin, not an endpoint')
})

t.test('organisations and roots', async (t) => {
  const f = await evidenceFleet()
  const other = await evidenceFleet(2)
  const pinnedElsewhere = verifyEvidence(await f.bundle(), { root: other.root })
  t.equal(pinnedElsewhere.ok, false, 'a bundle checked against another organisation\'s root')
  t.equal(pinnedElsewhere.problems.filter((p) => p.includes('not signed by the console role')).length, 4, 'three certificates and the seal')
  t.match(pinnedElsewhere.problems.at(-1), 'the bundle\'s seal is not signed by the console role of acme')
  t.same(pinnedElsewhere.sealedBy, [])
  t.match(pinnedElsewhere.notes.join('\n'), /not the pinned root; it was not used/)

  const evilSigner = keySigner(generateKeyPair())
  const evilRoot = await signEnvelope(newRoot({ org: 'evil', keys: { root: [evilSigner.keyid], release: [evilSigner.keyid], console: [evilSigner.keyid] }, expires: '2030-01-01T00:00:00Z' }), [evilSigner])
  t.match(verifyEvidence(await f.bundle({ root: evilRoot })).problems.join('\n'), 'the bundle is for organisation acme, the root for evil')

  const unsigned = verifyEvidence(await f.bundle({ root: { signed: f.root.signed, signatures: [] } }))
  t.match(unsigned.problems[0], 'root v1: not signed by its own root role')

  const foreign = await signEvent(f.event(0, 5, { org: 'globex' }), f.endpoints[0]!.signer)
  t.match(verifyEvidence(await f.bundle({ events: [...f.events, foreign] })).problems.join('\n'), 'for organisation globex, not acme')
})

t.test('input that is not a bundle throws BAD_EVIDENCE', async (t) => {
  const f = await evidenceFleet()
  const text = await f.bundle()
  t.throws(() => verifyEvidence('not json'), { code: 'BAD_EVIDENCE' })
  t.throws(() => verifyEvidence(text.slice(0, text.length / 2)), { code: 'BAD_EVIDENCE' }, 'truncated')
  t.throws(() => verifyEvidence('[]'), { code: 'BAD_EVIDENCE', message: /not a JSON object/ })
  t.throws(() => verifyEvidence(text.replace(EVIDENCE_FORMAT, 'patchswarm-evidence/9')), { code: 'BAD_EVIDENCE', message: /not a patchswarm evidence bundle/ })
  t.throws(() => verifyEvidence(text.replace('"root": {', '"root": {"x":1,')), { code: 'BAD_EVIDENCE', message: /^BAD_EVIDENCE: root: / })
  t.throws(() => verifyEvidence(text.replace('"events": [', '"events": {')), { code: 'BAD_EVIDENCE' })
  const certLine = serializeEnvelope(f.certificates[0]!).toString()
  t.throws(() => verifyEvidence(text.replace(certLine, certLine.slice(1))), { message: /certificates\[\d\] \(endpoint [0-9a-f]{12}…, line \d+\) is damaged/ })
  const rootLine = serializeEnvelope(f.root).toString()
  t.throws(() => verifyEvidence(text.replace(rootLine, rootLine.slice(1))), { code: 'BAD_EVIDENCE', message: /its root \(line 6\) is damaged/ })
  const sealLine = text.split('\n').find((l) => l.startsWith('"seal": '))!.slice('"seal": '.length)
  t.throws(() => verifyEvidence(text.replace(sealLine, sealLine.slice(0, -1))), { code: 'BAD_EVIDENCE', message: /its seal \(line \d+\) is damaged/ })
  t.throws(() => verifyEvidence(text.replace('"org": "acme",', '"org": "acme"')), { code: 'BAD_EVIDENCE', message: /bundle is not valid JSON: / }, 'damage outside the envelopes')
  await t.rejects(buildEvidence({ org: '../x', root: f.root, certificates: [], events: [], sealer: f.consoleSigner }), { code: 'BAD_ARGUMENT' })
  await t.rejects(buildEvidence({ org: ORG, root: f.root, certificates: [], events: [], filter: 'x'.repeat(2000), sealer: f.consoleSigner }), { code: 'BAD_ARGUMENT' })
})
