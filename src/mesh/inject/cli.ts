/**
 * `meshgate inject -f FILE [-o FILE]`: prints the manifests with the sidecar injected (as
 * `istioctl kube-inject -f FILE` does). `-f -` reads standard input. Diagnostics go to stderr; exit 1
 * when any is an error (the documents concerned are left unchanged, the others still injected).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatDiagnostic, hasErrors } from '../../lib/diagnostic.js';
import { DEFAULT_INJECT_OPTIONS, injectManifests, type InjectOptions } from './inject.js';

export const INJECT_USAGE = `  meshgate inject -f FILE [-o FILE] [--image meshgate:0.1.0] [--image-pull-policy IfNotPresent]
                  [--control istiod.istio-system.svc:15012] [--proxy-uid 1337] [--native-sidecar]
                  [--dns-capture]
`;

export function injectCommand(args: string[], fail: (message: string) => never): number {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      options: {
        filename: { type: 'string', short: 'f' },
        output: { type: 'string', short: 'o' },
        image: { type: 'string' },
        'image-pull-policy': { type: 'string' },
        control: { type: 'string' },
        'proxy-uid': { type: 'string' },
        'native-sidecar': { type: 'boolean' },
        'dns-capture': { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    fail(`inject: ${(e as Error).message.split('\n')[0]}`);
  }
  const file = values.filename;
  if (typeof file !== 'string' || file === '') fail('inject: -f FILE is required (- for standard input)');
  const control = (values.control as string | undefined) ?? DEFAULT_INJECT_OPTIONS.control;
  if (!/^[A-Za-z0-9.-]+:\d{1,5}$/.test(control) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(control)) fail(`inject: --control "${control}" is not HOST:PORT`);
  const uidText = (values['proxy-uid'] as string | undefined) ?? String(DEFAULT_INJECT_OPTIONS.proxyUid);
  if (!/^\d+$/.test(uidText) || Number(uidText) === 0) fail(`inject: --proxy-uid "${uidText}" is not a non-zero uid`);
  const pull = (values['image-pull-policy'] as string | undefined) ?? DEFAULT_INJECT_OPTIONS.imagePullPolicy;
  if (!['Always', 'IfNotPresent', 'Never'].includes(pull)) fail(`inject: --image-pull-policy "${pull}" is not Always, IfNotPresent or Never`);
  const options: InjectOptions = {
    image: (values.image as string | undefined) ?? DEFAULT_INJECT_OPTIONS.image,
    imagePullPolicy: pull,
    control,
    proxyUid: Number(uidText),
    nativeSidecar: values['native-sidecar'] === true,
    // As MeshConfig proxyMetadata ISTIO_META_DNS_CAPTURE for these pods (a pod's proxy.istio.io/config still decides).
    dnsCapture: values['dns-capture'] === true,
  };
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    process.stderr.write(`meshgate inject: cannot read ${file}: ${(e as Error).message}\n`);
    return 1;
  }
  const result = injectManifests(text, options, file);
  for (const d of result.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
  if (typeof values.output === 'string') writeFileSync(values.output, result.output);
  else process.stdout.write(result.output);
  return hasErrors(result.diagnostics) ? 1 : 0;
}
