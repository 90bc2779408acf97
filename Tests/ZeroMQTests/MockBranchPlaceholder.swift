// Placeholder so the `ZeroMQTests` target declared in Package.swift has a folder on the `mock` branch.
// The lead's ZeroMQ tests live here on main; delete this file when merging if it is in the way.
