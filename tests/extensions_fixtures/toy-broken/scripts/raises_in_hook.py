from modules import scripts


class RaisesInProcess(scripts.Script):
    def title(self):
        return "Raises in process"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args):
        raise ValueError("toy hook failure")

    def postprocess_image(self, p, pp, *args):
        raise KeyError("toy postprocess failure")
