// The baseline end of bench/throughput.ts: a plain hyperswarm connection in its own process, no
// protocol on top. `send` writes BYTES in BLOCK-sized writes (respecting backpressure) once the
// receiver asks; `recv` asks, counts the bytes and reports how long they took. JSON lines on stdout.
//
//   node --import tsx bench/_raw-peer.ts '{"role":"send"|"recv","bootstrap":[…],"seed":"hex","bytes":N,"block":N,"topic":"hex"}'
import { createSwarm, destroySwarm } from '../lib/swarm/transport.js'
import { generateKeyPair } from '../lib/crypto/keys.js'
import type { SwarmConnection } from 'hyperswarm'

interface RawConfig {
  role: 'send' | 'recv'
  bootstrap: Array<{ host: string, port: number }>
  seed: string
  bytes: number
  block: number
  topic: string
}

const config = JSON.parse(process.argv[2]!) as RawConfig
const say = (event: string, fields: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
const swarm = createSwarm({ keyPair: generateKeyPair(Buffer.from(config.seed, 'hex')), bootstrap: config.bootstrap, host: '127.0.0.1' })
let busy = false

swarm.on('connection', (conn: SwarmConnection) => {
  conn.on('error', () => {})
  if (busy) return
  busy = true
  say('connected')
  if (config.role === 'send') {
    conn.once('data', () => { send(conn).catch((err) => say('error', { message: String(err) })) })
  } else {
    let got = 0
    const t0 = performance.now()
    conn.on('data', (d: Buffer) => {
      got += d.length
      if (got >= config.bytes) {
        say('done', { ms: performance.now() - t0, bytes: got })
        conn.removeAllListeners('data')
      }
    })
    conn.write(Buffer.from([1])) // go
  }
})

async function send (conn: SwarmConnection): Promise<void> {
  const block = Buffer.alloc(config.block, 0xa5)
  let sent = 0
  while (sent < config.bytes) {
    const n = Math.min(config.block, config.bytes - sent)
    sent += n
    if (!conn.write(n === block.length ? block : block.subarray(0, n))) await new Promise((resolve) => conn.once('drain', resolve))
  }
  say('sent', { bytes: sent })
}

const discovery = swarm.join(Buffer.from(config.topic, 'hex'), { server: config.role === 'send', client: config.role === 'recv' })
await discovery.flushed()
say('ready')
process.on('SIGTERM', () => { destroySwarm(swarm).finally(() => process.exit(0)) })
