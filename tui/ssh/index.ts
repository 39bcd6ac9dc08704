// The console's SSH front door: `patchswarm console --ssh <port>` builds an SshServer with the
// host key from loadOrCreateHostKey, admins from fleetAdminResolver, and one TUI per session.
export { SshServer } from './server.js'
export type { SshAdmin, SshAuthEvent, SshChannel, SshConnectionInfo, SshPublicKey, SshServerOptions, SshSessionHandle, SshSize } from './server.js'
export { fleetAdminResolver, buildAdminIndex, type AdminSource } from './admins.js'
export { loadOrCreateHostKey, generateSshKey, ed25519ToOpenSsh, sshFingerprint, type HostKey, type SshKeyPair } from './keys.js'
export { TotpVerifier, base32Decode, type TotpResult, type TotpVerifierOptions } from './totp.js'
