// LatheTokenizers: see the module's files.
