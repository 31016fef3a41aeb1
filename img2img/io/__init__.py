"""Reading and writing what users hand us: images (`images`), label and instance maps (`labels`),
and MATLAB-compatible resizing (`resize`)."""
