/**
 * The `meshgate` command as a container runs it (bin/meshgate, the image's entrypoint): lab tests
 * start `meshgate sidecar` through it, so the sidecar runs as it does in a pod (the launcher and
 * then the proxy replace the entry process; no root Node.js process stays).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** bin/meshgate of this checkout (dist/test/mesh/ → the repository root). */
export const MESHGATE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/meshgate');

// The node binary the command runs: this one (lab processes inherit process.env).
process.env.MESHGATE_NODE ??= process.execPath;
