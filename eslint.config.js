// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

// Policy from the house rules: never run a command through a shell.
const NO_SHELL = { name: 'node:child_process', importNames: ['exec', 'execSync'], message: 'Use execFile with an argument array.' };
// Test doubles and helpers live in one folder, shared/testing/: tests and benches import
// it, nothing that ships may (the import path names the folder, so one pattern holds).
const TEST_SUPPORT_FILES = ['**/testing/**'];
const NO_TEST_SUPPORT = {
  regex: '(^|/)testing/',
  message: 'shared/testing/ is for tests and benches only.',
};
const NO_SQL = { name: 'better-sqlite3', message: 'SQL lives in collector/store/ only: add a store method there.' };
// The connection stays in collector/store/ too: take the Store (collector/store/store.ts: its
// parts and its transactions) from whoever opened it. The CLI commands open the file they are given.
const NO_DB = { group: ['**/store/db.ts'], message: 'Only collector/store/ holds the connection: take a store object instead.' };
const OPEN_DB_ONLY = { ...NO_DB, allowImportNames: ['openDatabase'], message: 'A command opens the database (openDatabase) and hands it to store constructors; nothing else from store/db.ts.' };
// A connection's methods, whatever the variable is called: SQL and transactions are the store's.
// AsyncStore's transaction(async (tx) => ...) is the store's own and allowed: the connection's
// transaction() cannot take an async function (better-sqlite3 refuses one that returns a promise).
const NO_CONNECTION_CALLS = {
  selector:
    "CallExpression[callee.type='MemberExpression'][callee.property.name=/^(prepare|pragma)$/], CallExpression[callee.type='MemberExpression'][callee.property.name='transaction']:not([arguments.0.async=true])",
  message: 'SQL and transactions live in collector/store/: add a store method (or use Store.inTransaction, inImmediateTransaction or transactional, or AsyncStore.transaction with an async function).',
};

// Transports (collector/gateway/, collector/http/, collector/commands/) reach the store only
// through what openCollector (collector/open-collector.ts) returns: its services, and its
// `store` for the fleet parts until those become services too.
const NO_STORE = {
  regex: String.raw`(^|/)store/`,
  message: 'Transports never touch the store: use (or add) a service under collector/services/, reached through openCollector.',
};
// The CLI prints its own text: what it shares with the dashboard lives in a service or a neutral module.
const NO_DASHBOARD = {
  group: ['**/http/views.ts', '**/http/dashboard.ts'],
  message: 'The CLI does not import dashboard view code: move what is shared (documents, formatting) to a service or a neutral module.',
};
const TRANSPORTS = ['collector/gateway/**/*.ts', 'collector/http/**/*.ts', 'collector/commands/**/*.ts'];
// Transport files that still import from collector/store/, each with its reason. Shrink this list; never grow it.
const STORE_IMPORT_EXCEPTIONS = [
  // Fleet parts (audit log, enrollment tokens, agents, reports, hosts) and API tokens, typed
  // from the asynchronous store (Store.async) until they are reached through services (issue 12).
  'collector/gateway/gateway.ts',
  'collector/http/views.ts',
  'collector/http/auth.ts',
  // createApp({ store: store.async }) is how the collector and the tests build the HTTP app:
  // its parts are typed from AsyncStore until createApp takes the services from openCollector.
  'collector/http/services.ts',
  // `store migrate` copies one database into another, below any collector: the store's own tool.
  'collector/commands/store.ts',
];

// collector/domain/ sees only itself and the project's shared/ (a file there sits one folder deep).
const DOMAIN_ONLY = {
  regex: String.raw`^(\.\./)+(agent|store|services|gateway|http|commands)/|^(\.\./)+(config|logger|server|signing-key|main)\.ts$`,
  message: 'collector/domain/ is pure: it imports only domain/ and shared/; the caller (a service) does the I/O.',
};
const DOMAIN_NO_IO = ['node:fs', 'node:fs/promises', 'node:net', 'node:http', 'node:https', 'node:child_process', 'undici', 'ws', 'pg'].map((name) => ({
  name,
  message: 'collector/domain/ does no I/O: read and write in a service, pass values in.',
}));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.cache/**', 'eslint.config.js'] },
  eslint.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Template literals with numbers are how log lines and messages are built here.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': ['error', { paths: [NO_SHELL] }],
    },
  },
  {
    // Layers: what ships never imports test support, and only the store speaks SQL.
    files: ['agent/**/*.ts', 'collector/**/*.ts', 'shared/**/*.ts'],
    ignores: ['**/*.test.ts', ...TEST_SUPPORT_FILES],
    rules: {
      'no-restricted-imports': ['error', { paths: [NO_SHELL, NO_SQL], patterns: [NO_TEST_SUPPORT, NO_DB] }],
      'no-restricted-syntax': ['error', NO_CONNECTION_CALLS],
    },
  },
  {
    // Commands take their collector from openCollector; `store migrate` (an exception below) opens its databases itself.
    files: ['collector/commands/**/*.ts'],
    ignores: ['**/*.test.ts', ...TEST_SUPPORT_FILES],
    rules: { 'no-restricted-imports': ['error', { paths: [NO_SHELL, NO_SQL], patterns: [NO_TEST_SUPPORT, OPEN_DB_ONLY, NO_DASHBOARD] }] },
  },
  {
    // Transports never touch the store (see NO_STORE); the listed exceptions keep the rules above.
    files: TRANSPORTS,
    ignores: ['**/*.test.ts', ...TEST_SUPPORT_FILES, ...STORE_IMPORT_EXCEPTIONS, 'collector/commands/**'],
    rules: { 'no-restricted-imports': ['error', { paths: [NO_SHELL, NO_SQL], patterns: [NO_TEST_SUPPORT, NO_DB, NO_STORE] }] },
  },
  {
    files: ['collector/commands/**/*.ts'],
    ignores: ['**/*.test.ts', ...TEST_SUPPORT_FILES, ...STORE_IMPORT_EXCEPTIONS],
    rules: { 'no-restricted-imports': ['error', { paths: [NO_SHELL, NO_SQL], patterns: [NO_TEST_SUPPORT, NO_DB, NO_STORE, NO_DASHBOARD] }] },
  },
  {
    // Benches and tools open a database as a command does, and read it through store objects.
    // bench-store.ts (on main since issue 12 §2) measures the store's SQL layer itself on both engines.
    files: ['scripts/**/*.ts'],
    ignores: ['**/*.test.ts', ...TEST_SUPPORT_FILES, 'scripts/bench-store.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: [NO_SHELL, NO_SQL], patterns: [OPEN_DB_ONLY] }],
      'no-restricted-syntax': ['error', NO_CONNECTION_CALLS],
    },
  },
  {
    // serve: it takes its collector from openCollector, adds the store's background work
    // (checkpoints, integrity, health) and hands the connection to tests (Collector.db); it runs no SQL itself.
    files: ['collector/server.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [NO_SHELL, NO_SQL], patterns: [NO_TEST_SUPPORT] }] },
  },
  {
    // The domain (correlation, feed formats, plans, waves, windows, policy) is pure: it takes
    // values and returns values, so it imports no other collector folder and does no I/O.
    files: ['collector/domain/**/*.ts'],
    ignores: ['**/*.test.ts', ...TEST_SUPPORT_FILES],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [NO_SHELL, NO_SQL, ...DOMAIN_NO_IO],
          patterns: [NO_TEST_SUPPORT, NO_DB, DOMAIN_ONLY],
        },
      ],
    },
  },
  {
    files: ['collector/store/**/*.ts'],
    ignores: ['**/*.test.ts', ...TEST_SUPPORT_FILES],
    rules: { 'no-restricted-imports': ['error', { paths: [NO_SHELL], patterns: [NO_TEST_SUPPORT] }], 'no-restricted-syntax': 'off' },
  },
  {
    files: ['**/*.test.ts'],
    rules: {
      // node:test's describe/it return promises that the runner awaits itself.
      '@typescript-eslint/no-floating-promises': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
