// LatheFormats: see the module's files.
