// The cluster tests use the same local cluster as the benchmarks.
export { startCluster, type LocalCluster, type LocalNode } from '../../src/redis/local-cluster.js';
