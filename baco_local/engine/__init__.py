"""The engine: two llama.cpp contexts, routers, sampling and the BACo token loop."""
