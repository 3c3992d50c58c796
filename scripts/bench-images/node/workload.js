// Workload of the node benchmark image: load the packages a typical server or build tool
// starts with, use a few of them, and print `ready` last.
'use strict';

// aws-sdk v2 prints a maintenance-mode notice to stderr on load unless this is set.
process.env.AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE = '1';

const names = ['express', 'lodash', 'typescript', 'webpack', '@babel/core', 'rxjs', 'moment', 'aws-sdk'];
const modules = {};
for (const name of names) {
  modules[name] = require(name);
}

const _ = modules.lodash;
const ts = modules.typescript;
const moment = modules.moment;

const sum = _.sum(_.range(1, 101));
const js = ts.transpileModule('const answer: number = 40 + 2;', {
  compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020 },
}).outputText.trim().split('\n').pop();
const day = moment.utc('2024-02-29T12:00:00Z').add(1, 'year').format('YYYY-MM-DD');

console.log(`result sum=${sum} day=${day} js=${js}`);
console.log('ready');
