/**
 * Entry module of a data-plane worker process (`meshgate run --workers N`, N >= 1): the primary forks
 * workers on this file rather than on the CLI, so a worker loads only the runtime and its
 * observability, never translate, the providers, YAML, the admin server or the Kubernetes client.
 */
import { runWorker } from '../control/worker.js';

runWorker();
