"""The lecture's fixed choices, in one torch-free place.

Training (torch) and the runtime commands (onnxruntime only) both need them:
the model's default width, and compare's table that names any other width.
"""

IMAGE_SHAPE = (1, 28, 28)  # one MNIST digit, channels first
NB_CHANNELS = 32  # the lecture's nb_channels: the width of every hidden convolution
# the square image sizes aetool's architecture supports: the lecture's 28x28, and powers of two
IMAGE_SIZES = (28, 32, 64, 128, 256)
