// A DHT bootstrap for bench/wan.ts, run inside a netsim namespace (wsim-origin): three testnet
// nodes bound to the namespace's address. Prints one JSON line {event:'ready', bootstrap}; closes on
// SIGTERM/SIGINT or when the parent's pipe (stdin) closes, so it never outlives the benchmark.
//
//   ip netns exec wsim-origin node --import tsx bench/_wan-dht.ts 10.0.100.2
import createTestnet from 'hyperdht/testnet.js'

const host = process.argv[2] ?? '127.0.0.1'
const testnet = await createTestnet(3, { host })
process.stdout.write(JSON.stringify({ event: 'ready', bootstrap: testnet.bootstrap }) + '\n')

let closing = false
async function close () {
  if (closing) return
  closing = true
  const timer = setTimeout(() => process.exit(0), 2000)
  await testnet.destroy().catch(() => {})
  clearTimeout(timer)
  process.exit(0)
}
process.on('SIGTERM', () => { close() })
process.on('SIGINT', () => { close() })
process.stdin.on('end', () => { close() }).on('error', () => { close() }).resume()
