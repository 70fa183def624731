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
    rules: { 'no-restricted-imports': ['error', { paths: [NO_SHELL, NO_SQL], patterns: [NO_TEST_SUPPORT] }] },
  },
  {
    files: ['collector/store/**/*.ts'],
    ignores: ['**/*.test.ts', ...TEST_SUPPORT_FILES],
    rules: { 'no-restricted-imports': ['error', { paths: [NO_SHELL], patterns: [NO_TEST_SUPPORT] }] },
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
