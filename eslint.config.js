import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import vigil from './eslint/plugin.js';
import { ROOMS, ALL_ROOMS } from './eslint/rooms.js';

// Room-to-room edges: for each room, every other room it may not import from is a zone.
const zones = [];
for (const [room, may] of Object.entries(ROOMS)) {
  for (const other of ALL_ROOMS) {
    if (other === room) continue;
    const partial = may.filter((m) => m.startsWith(`${other}/`));
    if (may.includes(other)) continue;
    zones.push({
      target: `./${room}`,
      from: `./${other}`,
      ...(partial.length ? { except: partial.map((p) => `./${p.slice(other.length + 1)}`) } : {}),
      message: `${room}/ may not import ${other}/ (ARCHITECTURE.md rooms)`,
    });
  }
}

export default tseslint.config(
  { ignores: ['node_modules/**', '.vigil/**', 'coverage/**', 'test/replay/histories/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX, vigil },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': [
        'error',
        { checksVoidReturn: { arguments: false } },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'import-x/no-restricted-paths': ['error', { zones }],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'vigil/allowed-packages': 'error',
      'vigil/workflow-type-only': 'error',
      // config/config.ts parses the environment once; everything else gets a typed Config.
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'read settings from config/config.ts' },
      ],
    },
  },
  {
    files: ['config/**', 'test/**', 'bench/**', 'eslint/**', 'vitest.config.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { process: 'readonly', console: 'readonly' },
    },
  },
  {
    files: ['test/**', 'bench/**'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      // Tests assert on parsed JSON answers; typing every answer would add nothing.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
);
