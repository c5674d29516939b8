"""Stage 2: the network as a layer graph, from a workload file, a Distiller checkpoint or a torch
module, and the weights its layers are simulated with."""
