// LatheTensors: see the module's files.
