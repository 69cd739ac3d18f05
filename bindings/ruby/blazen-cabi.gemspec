# frozen_string_literal: true

Gem::Specification.new do |s|
  s.name = "blazen-cabi"
  s.version = "0.7.0"
  s.summary = "Blazen distributed control plane for Ruby, on the blazen-cabi C ABI"
  s.description = "Client, workers, subscriptions and an embedded control plane " \
                  "(Blazen::ControlPlane), loaded through the ffi gem from the bundled " \
                  "libblazen_cabi.so (or BLAZEN_CABI_LIB)."
  s.authors = ["blazen-cabi developers"]
  s.license = "MIT"
  s.required_ruby_version = ">= 3.0"
  s.add_dependency "ffi", ">= 1.15"
  s.files = Dir["lib/**/*.rb"] + Dir["lib/blazen/native/*.so"]
  s.require_paths = ["lib"]
end
