// LatheRemote: placeholder until its first files land; delete when adding real ones.
