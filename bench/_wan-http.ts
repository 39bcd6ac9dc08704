// The client–server baseline's server for bench/wan.ts, run inside wsim-origin: plain node:http
// serving one file (GET /payload). Prints {event:'listening', port}; on exit {event:'served', bytes,
// requests}. Closes on SIGTERM/SIGINT or when the parent's pipe (stdin) closes.
//
//   ip netns exec wsim-origin node --import tsx bench/_wan-http.ts 10.0.100.2 8080 /path/payload.bin
import http from 'node:http'
import fs from 'node:fs'

const [host = '127.0.0.1', portArg = '8080', file = ''] = process.argv.slice(2)
const size = fs.statSync(file).size
let served = 0
let requests = 0

const server = http.createServer((req, res) => {
  if (req.method !== 'GET' || req.url !== '/payload') { res.writeHead(404).end(); return }
  requests++
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
  const stream = fs.createReadStream(file, { highWaterMark: 256 * 1024 })
  stream.on('data', (d) => { served += d.length })
  stream.pipe(res)
  res.on('close', () => stream.destroy())
})
server.listen(Number(portArg), host, () => {
  process.stdout.write(JSON.stringify({ event: 'listening', port: (server.address() as { port: number }).port }) + '\n')
})

let closing = false
function close () {
  if (closing) return
  closing = true
  process.stdout.write(JSON.stringify({ event: 'served', bytes: served, requests }) + '\n')
  server.closeAllConnections()
  server.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 1000).unref()
}
process.on('SIGTERM', close)
process.on('SIGINT', close)
process.stdin.on('end', close).on('error', close).resume()
