from modules import scripts

VERSION = 1


class InstallerToy(scripts.Script):
    def title(self):
        return "Installer toy"

    def show(self, is_img2img):
        return scripts.AlwaysVisible
