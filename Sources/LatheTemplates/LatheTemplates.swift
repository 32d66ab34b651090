// LatheTemplates: see the module's files.
