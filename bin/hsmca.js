#!/usr/bin/env node
'use strict';
const path = require('node:path');
require(path.join(__dirname, '..', 'scripts', 'build-if-needed.js')).buildIfNeeded();
require(path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js'))
  .main(process.argv.slice(2))
  .then((code) => {
    if (typeof code === 'number') process.exitCode = code;
  });
