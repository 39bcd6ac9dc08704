// `patchswarm dht`: a small DHT on this machine to try patchswarm without the public one (the
// README's console walk-through, demos). Production consoles and agents use `--bootstrap public`
// or their own bootstrap nodes.
import type { Command } from 'commander'
import { startTestnet } from '../../lib/swarm/transport.js'
import type { CliContext } from '../cli.js'
import { parsePositiveInt } from './options.js'

export function registerDhtCommand (program: Command, ctx: CliContext): void {
  program.command('dht')
    .description('run a local DHT (a few nodes on one address) for trying patchswarm without the public DHT')
    .option('--host <address>', 'address to bind', '127.0.0.1')
    .option('--port <port>', 'the first node\'s port, the bootstrap others give (default: any free one)', parsePositiveInt)
    .option('--size <n>', 'how many DHT nodes', parsePositiveInt, 3)
    .option('--json', 'print the bootstrap as JSON')
    .action(async (opts: { host: string, port?: number, size: number, json?: boolean }) => {
      const testnet = await startTestnet(opts.size, { host: opts.host, ...(opts.port ? { port: opts.port } : {}) })
      const first = testnet.bootstrap[0]!
      ctx.print(opts, `DHT of ${opts.size} nodes; bootstrap ${first.host}:${first.port} (stop with Ctrl-C)`, { bootstrap: testnet.bootstrap })
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve())
        process.once('SIGTERM', () => resolve())
      })
      await testnet.destroy()
    })
}
