/**
 * Memory back after a burst of traffic. Under load V8 grows its young generation to the maximum
 * semi-space (16 MiB each half on 64-bit) and old space with the garbage of the connections and
 * requests served; once the traffic stops it keeps those pages committed, and V8's own memory reducer
 * waits for a quiet heap it may not see for a long time (measured in bench:sidecar: a client sidecar
 * stayed at 100 MiB, 5 s after a 500 req/s burst, against 65 MiB before it). So: every `intervalMs` (3 s),
 * when this process spent at least `busyRatio` of a CPU in the previous interval and less than
 * `idleRatio` in the last one (traffic stopped), and V8's committed heap grew by `growthBytes` since
 * the last compaction, `compact` runs once (the sidecar passes lib/heap.ts `compactHeapSoon` with
 * plain full collections: the memory-reducing one also drops compiled code, which the next burst
 * paid for; src/cli/sidecar.ts). No cost per request; one timer (unref'd), one `cpuUsage` and one
 * `getHeapStatistics` per interval; nothing runs under steady traffic.
 */
import v8 from 'node:v8';

export interface IdleMemoryOptions {
  compact: () => void;
  intervalMs?: number;
  /** CPU share (0-1 of one CPU) below which an interval is idle (default 0.02). */
  idleRatio?: number;
  /** CPU share above which an interval was busy (default 0.05). */
  busyRatio?: number;
  /** Growth of V8's committed heap since the last compaction that makes one worth it (default 4 MiB). */
  growthBytes?: number;
}

/** Starts watching; returns the stop function. */
export function compactAfterTraffic(o: IdleMemoryOptions): () => void {
  const interval = o.intervalMs ?? 3000;
  const idle = o.idleRatio ?? 0.02;
  const busyAbove = o.busyRatio ?? 0.05;
  const growth = o.growthBytes ?? 4 * 1024 * 1024;
  let last = process.cpuUsage();
  let lastAt = performance.now();
  let wasBusy = false;
  let baseline = v8.getHeapStatistics().total_physical_size;
  let compacted = false;
  const timer = setInterval(() => {
    const now = performance.now();
    const used = process.cpuUsage(last);
    last = process.cpuUsage();
    const ratio = (used.user + used.system) / 1000 / Math.max(1, now - lastAt);
    lastAt = now;
    const committed = v8.getHeapStatistics().total_physical_size;
    if (compacted) {
      // The heap as the compaction left it (measured one interval later): the new baseline.
      baseline = committed;
      compacted = false;
    }
    if (ratio >= busyAbove) wasBusy = true;
    else if (ratio < idle && wasBusy) {
      wasBusy = false;
      if (committed - baseline >= growth) {
        o.compact();
        compacted = true;
      }
    }
  }, interval);
  timer.unref();
  return () => clearInterval(timer);
}
