/** The part of autocannon's API the benchmark uses (the package ships no types). */
declare module "autocannon" {
  type Request = { method?: string; path?: string; headers?: Record<string, string>; body?: string };
  type Options = {
    url: string;
    connections?: number;
    duration?: number;
    timeout?: number;
    sampleInt?: number;
    /** Requests per second over all connections (autocannon then corrects latencies for coordinated omission). */
    overallRate?: number;
    method?: string;
    headers?: Record<string, string>;
    requests?: { setupRequest?: (req: Request, context: Record<string, unknown>) => Request }[];
  };
  type Histogram = { average: number; mean: number; total: number; p50: number; p99: number; max: number };
  type Result = { requests: Histogram; latency: Histogram; duration: number; errors: number; timeouts: number; non2xx: number };
  /** Runs a load and resolves with its statistics; stop() ends it early (it then resolves with the run so far). */
  export default function autocannon(options: Options): Promise<Result> & { stop(): void };
}
