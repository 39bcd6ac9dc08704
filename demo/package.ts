// The package the demo rolls out: a small "service" that install.sh puts in place, health.sh checks
// and rollback.sh takes back, plus a payload of the requested size so the swarm has bytes to move.
// The scripts keep their state in the agent's own folder (two levels above PATCHSWARM_WORK_DIR,
// see agent/config.ts), so each endpoint has its own service. A machine whose folder holds the file
// `broken-service` plays the endpoint where the update breaks something: its health check fails,
// and the agent rolls the install back.
import fs from 'node:fs/promises'
import path from 'node:path'
import { randomBytes } from 'node:crypto'

export const BROKEN_MARKER = 'broken-service'

const INSTALL = `#!/bin/sh
# Installs demo-service: keeps the running version for rollback, then puts the new one in place.
set -eu
home="$PATCHSWARM_WORK_DIR/../../demo-service"
mkdir -p "$home"
if [ -f "$home/version" ] && [ ! -f "$home/previous" ]; then cp "$home/version" "$home/previous"; fi
cp "$PATCHSWARM_PACKAGE_DIR/VERSION" "$home/version.new"
mv "$home/version.new" "$home/version"
echo "demo-service $(cat "$home/version") installed"
`

const HEALTH = `#!/bin/sh
# Is demo-service up after the update? On the machine the demo marked, it is not.
home="$PATCHSWARM_WORK_DIR/../../demo-service"
if [ -e "$PATCHSWARM_WORK_DIR/../../${BROKEN_MARKER}" ]; then
  echo "demo-service does not answer on its port after the update" >&2
  exit 1
fi
grep -qx "$(cat "$PATCHSWARM_PACKAGE_DIR/VERSION")" "$home/version"
`

const ROLLBACK = `#!/bin/sh
# Puts the version that ran before back (or removes the service if there was none).
set -eu
home="$PATCHSWARM_WORK_DIR/../../demo-service"
if [ -f "$home/previous" ]; then mv "$home/previous" "$home/version"; else rm -f "$home/version"; fi
echo "demo-service rolled back"
`

/** Writes the package's files into `dir` (which must not exist yet). */
export async function writeDemoPackage (dir: string, version: string, payloadBytes: number): Promise<void> {
  await fs.mkdir(dir, { recursive: true })
  await fs.writeFile(path.join(dir, 'install.sh'), INSTALL, { mode: 0o755 })
  await fs.writeFile(path.join(dir, 'health.sh'), HEALTH, { mode: 0o755 })
  await fs.writeFile(path.join(dir, 'rollback.sh'), ROLLBACK, { mode: 0o755 })
  await fs.writeFile(path.join(dir, 'VERSION'), version + '\n')
  // Random bytes: nothing on the endpoints dedups them, every chunk has to travel.
  const file = await fs.open(path.join(dir, 'payload.bin'), 'w')
  try {
    for (let left = payloadBytes; left > 0; left -= 1 << 20) await file.write(randomBytes(Math.min(left, 1 << 20)))
  } finally {
    await file.close()
  }
}
