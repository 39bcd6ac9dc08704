// The parts of protomux 3 that patchswarm uses (it ships no types).
declare module 'protomux' {
  import type { Encoder } from 'compact-encoding'

  /** A framed duplex stream (secret-stream, a hyperswarm connection): one write is one message. */
  export interface FramedStream {
    write (data: Uint8Array): boolean
    destroy (err?: Error): void
    on (event: string, listener: (...args: any[]) => void): unknown
    destroyed?: boolean
    userData?: unknown
  }

  export interface Message<T> {
    readonly type: number
    readonly encoding: Encoder<T>
    onmessage: (message: T, channel: Channel) => unknown
    /** False when the stream wants a drain (backpressure) or the channel is closed. */
    send (message: T): boolean
  }

  export interface MessageOptions<T> {
    encoding?: Encoder<T>
    /** Errors thrown here (or a rejected promise) destroy the stream. */
    onmessage? (message: T, channel: Channel): unknown
    autoBatch?: boolean
  }

  export interface ChannelOptions<H = unknown> {
    protocol: string
    id?: Uint8Array | null
    aliases?: string[]
    unique?: boolean
    userData?: unknown
    /** Encoding of the handshake carried in the channel-open frame. */
    handshake?: Encoder<H> | null
    messages?: Array<MessageOptions<any>>
    /** Called once the remote opened the channel too, with its handshake. */
    onopen? (handshake: H, channel: Channel): unknown
    /** Either side closed the channel, the remote rejected it, or the stream closed. */
    onclose? (isRemote: boolean, channel: Channel): unknown
    ondestroy? (channel: Channel): unknown
    ondrain? (channel: Channel): unknown
  }

  export interface Channel {
    readonly protocol: string
    readonly id: Uint8Array | null
    readonly opened: boolean
    readonly closed: boolean
    readonly destroyed: boolean
    readonly handshake: unknown
    userData: unknown
    open (handshake?: unknown): void
    close (): void
    addMessage<T> (opts: MessageOptions<T>): Message<T>
    cork (): void
    uncork (): void
    fullyOpened (): Promise<boolean>
    fullyClosed (): Promise<void>
  }

  export default class Protomux {
    constructor (stream: FramedStream, opts?: { alloc? (size: number): Uint8Array })
    static from (stream: FramedStream | Protomux, opts?: { alloc? (size: number): Uint8Array }): Protomux
    static isProtomux (value: unknown): value is Protomux
    readonly stream: FramedStream
    readonly isProtomux: true
    drained: boolean
    /** Null when a channel of that protocol and id is already open (unique) or the stream is gone. */
    createChannel<H = unknown> (opts: ChannelOptions<H>): Channel | null
    opened (opts: { protocol: string, id?: Uint8Array | null }): boolean
    pair (opts: { protocol: string, id?: Uint8Array | null }, notify: (id: Uint8Array | null) => unknown): void
    unpair (opts: { protocol: string, id?: Uint8Array | null }): void
    cork (): void
    uncork (): void
    isIdle (): boolean
    destroy (err?: Error): void
    [Symbol.iterator] (): Iterator<Channel>
  }
}
