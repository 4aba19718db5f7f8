import { inject } from 'vitest';
import { storeContract } from './contract.ts';
import { postgresTarget } from './targets.ts';

storeContract(postgresTarget(inject('services').databaseUrl));
