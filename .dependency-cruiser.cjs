// Imports point down only (docs/ARCHITECTURE.md). `npm run deps` checks it,
// and `npm test` runs that check before the suite.
//
// Layers, lowest first. A module may import its own layer and the ones below,
// never one above. The browser client and the origin connector are shipped to
// other programs: they import nothing of the gateway except the wire protocol.
const layers = [
  ['base', '^src/(errors|config|log|metrics|uws)\\.ts$|^src/(generated|observability|protocol)/'],
  ['redis and net', '^src/(redis|net)/'],
  ['auth', '^src/auth/'],
  ['queue', '^src/queue/'],
  ['machines', '^machines/'],
  ['real time', '^src/realtime/'],
  ['backends', '^src/backends/'],
  ['http edge', '^src/http/'],
  ['composition', '^src/gateway\\.ts$'],
  ['development entry', '^src/(main\\.ts|dev/|sim/|tools/)'],
];

const upward = layers.slice(0, -1).map(([name, path], i) => ({
  name: `no-upward-from-${name.replace(/ /g, '-')}`,
  comment: `${name} must not import a layer above it (${layers
    .slice(i + 1)
    .map(([n]) => n)
    .join(', ')})`,
  severity: 'error',
  from: { path },
  to: { path: layers.slice(i + 1).map(([, p]) => `(${p})`).join('|') },
}));

module.exports = {
  forbidden: [
    { name: 'no-circular', comment: 'an import cycle', severity: 'error', from: {}, to: { circular: true } },
    ...upward,
    {
      name: 'shipped-code-stands-alone',
      comment: 'the browser client and the connector run in other programs: only the wire protocol is shared',
      severity: 'error',
      from: { path: '^src/(client|connector)/' },
      to: { path: '^(src|machines)/', pathNot: '^src/(client|connector|protocol)/' },
    },
    {
      name: 'nothing-imports-shipped-code',
      comment: 'the gateway does not depend on its own clients',
      severity: 'error',
      from: { path: '^(src|machines)/', pathNot: '^src/(client|connector)/' },
      to: { path: '^src/(client|connector)/' },
    },
    {
      name: 'every-module-in-a-layer',
      comment: 'a new directory needs a place in the layer list above',
      severity: 'error',
      from: { path: '^(src|machines)/', pathNot: `${layers.map(([, p]) => `(${p})`).join('|')}|^src/(client|connector)/` },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^src/generated/proto/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
