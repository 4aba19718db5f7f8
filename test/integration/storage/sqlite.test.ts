import { storeContract } from './contract.ts';
import { sqliteTarget } from './targets.ts';

storeContract(sqliteTarget());
