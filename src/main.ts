import { loadConfig, ConfigError } from './config.js';
import { createLogger } from './log.js';
import { startEmbeddedRedis, RedisServerMissing, type EmbeddedRedis } from './redis/embedded.js';
import { startGateway, type Gateway } from './gateway.js';
import { startDevBackends, type DevBackends } from './dev/backends.js';
import { NativeUwsUnavailable } from './uws.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel, { instance: config.instanceId }, config.logFormat);
  let embedded: EmbeddedRedis | undefined;
  let address = config.redis.address;
  if (!address) {
    embedded = await startEmbeddedRedis({ bin: config.redis.serverBin });
    address = embedded.address;
    log.info({ redis: address }, 'no REDIS_ADDRESS given: started a throwaway redis-server (nothing is kept; it stops with the gateway)');
  }
  let gateway: Gateway;
  let dev: DevBackends | undefined;
  try {
    // no backend addresses (development only: production refuses to start without them): local simulators
    dev = await startDevBackends({ reservation: config.backends.reservation.address, payment: config.backends.payment.address }, log);
    gateway = await startGateway(config, { redisAddress: address, reservationAddress: dev.reservationAddress, paymentAddress: dev.paymentAddress }, log);
  } catch (err) {
    await dev?.stop();
    await embedded?.stop();
    throw err;
  }
  const shown = config.server.host === '0.0.0.0' ? '127.0.0.1' : config.server.host;
  const base = `http://${shown}:${gateway.port}`;
  log.info(`waiting room ready: open ${base}/?event=demo (operator page ${base}/admin, API docs ${base}/docs)`);

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('shutdown took longer than 30s: exiting');
      process.exit(1);
    }, 30_000);
    force.unref();
    await gateway.stop();
    await dev?.stop();
    if (embedded) {
      await embedded.stop();
      log.info('throwaway redis-server stopped');
    }
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  // an exception nobody caught leaves unknown state: log it with everything we know, drain, exit non-zero
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception: shutting down');
    void gateway.stop().finally(() => process.exit(1));
  });
}

main().catch((err: unknown) => {
  if (err instanceof NativeUwsUnavailable || err instanceof RedisServerMissing) {
    process.stderr.write(`cannot start: ${err.message}\n`);
  } else {
    process.stderr.write(`cannot start: ${(err as Error)?.stack ?? String(err)}\n`);
  }
  process.exit(1);
});
