# Makes the image fixtures of crates/datasets/tests/encoded.rs and their OpenCV decodings.
import numpy as np, cv2
from PIL import Image
rng = np.random.default_rng(11)
h, w = 13, 17
yy, xx = np.mgrid[0:h, 0:w]
rgb = np.stack([(xx * 15) % 256, (yy * 19) % 256, (xx * yy * 7) % 256], -1).astype(np.uint8)
rgb = np.clip(rgb.astype(int) + rng.integers(-30, 31, rgb.shape), 0, 255).astype(np.uint8)
alpha = rng.integers(0, 256, (h, w)).astype(np.uint8)
Image.fromarray(rgb, "RGB").save("rgb.png")
Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save("rgba.png")
Image.fromarray(rgb[..., 1], "L").save("gray.png")
Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA").save("gray_alpha.png")
pal = Image.fromarray(rgb, "RGB").quantize(colors=16)
pal.info["transparency"] = 3
pal.save("palette_trns.png", transparency=3)
Image.fromarray(rgb[..., 2] > 128).save("gray1.png")
# JPEGs as convert_imageset --encoded would store them (cv::imencode), and one by PIL with 4:4:4 chroma.
cv2.imwrite("color420.jpg", rgb[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 90])
Image.fromarray(rgb, "RGB").save("color444.jpg", quality=75, subsampling=0)
Image.fromarray(rgb, "RGB").save("color422.jpg", quality=95, subsampling=1)
cv2.imwrite("gray.jpg", rgb[..., 1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 80])
import glob, os
for f in sorted(glob.glob("*.png")) + sorted(glob.glob("*.jpg")):
    if ".cv." in f: continue
    data = np.frombuffer(open(f, "rb").read(), np.uint8)
    stem = f.rsplit(".", 1)[0] + "_" + f.rsplit(".", 1)[1]
    for name, flag in [("native", cv2.IMREAD_UNCHANGED), ("color", cv2.IMREAD_COLOR), ("gray", cv2.IMREAD_GRAYSCALE)]:
        img = cv2.imdecode(data, flag)
        assert img.dtype == np.uint8
        # Planes stacked vertically: C*H rows of W gray pixels, lossless.
        chw = img.reshape(img.shape[0], img.shape[1], -1).transpose(2, 0, 1)
        c = chw.shape[0]
        out = f"{stem}.cv.{name}.c{c}.png"
        cv2.imwrite(out, chw.reshape(c * img.shape[0], img.shape[1]))
print(cv2.__version__)
# cv::resize(.., INTER_LINEAR) as Caffe's ImageData layer calls it, on images decoded in colour and in gray.
for f in ["rgb.png", "gray.png"]:
    for flag, name in [(cv2.IMREAD_COLOR, "color"), (cv2.IMREAD_GRAYSCALE, "gray")]:
        img = cv2.imread(f, flag)
        for (dh, dw) in [(5, 7), (20, 11), (26, 34), (6, 8), (32, 32), (3, 40), (13, 18)]:
            r = cv2.resize(img, (dw, dh), interpolation=cv2.INTER_LINEAR)
            chw = r.reshape(dh, dw, -1).transpose(2, 0, 1)
            cv2.imwrite(f"{f.rsplit('.', 1)[0]}.{name}.resize{dh}x{dw}.png", chw.reshape(-1, dw))
