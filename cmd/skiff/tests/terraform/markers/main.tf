# The executor's test infrastructure: one terraform_data per name, each leaving a
# marker file behind while it exists (local-exec on create, removed on destroy). A
# fault makes the marker named `fail` fail: `transient` once, `permanent` always;
# `slow` makes every create take `delay` seconds.

variable "names" {
  type = list(string)
}

variable "markers" {
  type = string
}

variable "fail" {
  type    = string
  default = ""
}

variable "fault" {
  type    = string
  default = "none"
}

variable "delay" {
  type    = number
  default = 0
}

resource "terraform_data" "marker" {
  for_each         = toset(var.names)
  input            = each.value
  triggers_replace = [var.markers]

  provisioner "local-exec" {
    command = <<-EOT
      set -e
      sleep ${var.delay}
      if [ "${each.value}" = "${var.fail}" ]; then
        if [ "${var.fault}" = "transient" ] && [ ! -f "${var.markers}/.retried-${each.value}" ]; then
          touch "${var.markers}/.retried-${each.value}"
          echo "marker backend temporarily unavailable" >&2
          exit 1
        fi
        if [ "${var.fault}" = "permanent" ]; then
          echo "marker ${each.value} cannot be made: disk quota exceeded" >&2
          exit 1
        fi
      fi
      touch "${var.markers}/${each.value}"
    EOT
  }

  provisioner "local-exec" {
    when    = destroy
    command = "rm -f '${self.triggers_replace[0]}/${self.input}'"
  }
}

# What changed outside Terraform: a sentinel file's content (drift for the tests).
resource "terraform_data" "sentinel" {
  input = fileexists("${var.markers}/.sentinel") ? file("${var.markers}/.sentinel") : ""
}

output "names" {
  value = sort(keys(terraform_data.marker))
}
