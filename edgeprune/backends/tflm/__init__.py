"""The TFLite-Micro backend: op plan (`plan`), canonical flatbuffer (`flatbuffer`), LUT
compression rules (`compress`), flash and arena (`memory`). Torch-free."""
