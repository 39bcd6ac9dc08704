// Where a console's admin socket is: --socket, $PATCHSWARM_SOCKET, or <data>/console.sock.
import path from 'node:path'
import type { CliContext } from '../cli.js'

export const DEFAULT_DATA = 'patchswarm-data'

export function socketPathFor (ctx: CliContext, data: string | undefined, socket: string | undefined): string {
  if (socket) return ctx.resolve(socket)
  if (ctx.io.env.PATCHSWARM_SOCKET) return ctx.resolve(ctx.io.env.PATCHSWARM_SOCKET)
  return path.join(ctx.resolve(data ?? DEFAULT_DATA), 'console.sock')
}
