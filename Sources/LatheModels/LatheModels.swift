// LatheModels: see the module's files.
