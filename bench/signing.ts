// Ed25519 through our signing path (lib/crypto) against node:crypto's Ed25519 on the same messages.
import { generateKeyPairSync, sign as nodeSign, verify as nodeVerify, randomBytes } from 'node:crypto'
import { generateKeyPair, sign, verify } from '../lib/crypto/keys.js'
import type { BenchResult } from './run.js'

export const summary = { figure: 'sign_per_s', baseline: 'baseline_sign_per_s', goal: 'ratio >= 1 (verify_per_s too)' }

function rate (seconds: number, fn: () => void): number {
  let n = 0
  const end = performance.now() + seconds * 1000
  while (performance.now() < end) {
    for (let i = 0; i < 256; i++) fn()
    n += 256
  }
  return Math.round(n / seconds)
}

export async function run (): Promise<BenchResult> {
  const messages = Array.from({ length: 1024 }, () => randomBytes(256)) // a typical event or small document
  const kp = generateKeyPair()
  const node = generateKeyPairSync('ed25519')
  const sigs = messages.map((m) => sign(m, kp.secretKey))
  const nodeSigs = messages.map((m) => nodeSign(null, m, node.privateKey))
  let i = 0
  const next = () => (i = (i + 1) & 1023)
  const best = (f: () => number) => Math.max(f(), f(), f())
  const signPerS = best(() => rate(1, () => { sign(messages[next()]!, kp.secretKey) }))
  const verifyPerS = best(() => rate(1, () => { const j = next(); if (!verify(sigs[j]!, messages[j]!, kp.publicKey)) throw new Error('bad') }))
  const baseSign = best(() => rate(1, () => { nodeSign(null, messages[next()]!, node.privateKey) }))
  const baseVerify = best(() => rate(1, () => { const j = next(); if (!nodeVerify(null, messages[j]!, node.publicKey, nodeSigs[j]!)) throw new Error('bad') }))
  return {
    bench: 'signing',
    message_bytes: 256,
    sign_per_s: signPerS,
    verify_per_s: verifyPerS,
    baseline_sign_per_s: baseSign,
    baseline_verify_per_s: baseVerify,
    ratio: Math.round((signPerS / baseSign) * 100) / 100,
    verify_ratio: Math.round((verifyPerS / baseVerify) * 100) / 100
  }
}
