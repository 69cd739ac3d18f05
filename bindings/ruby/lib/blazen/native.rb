# frozen_string_literal: true

require "ffi"

module Blazen
  # The C functions, constants and callback tables of blazen-cabi. The
  # attachments themselves are generated (`native/generated.rb`, written by
  # `cargo xtask ruby` from the library's stub table); this file only finds
  # the library. When it cannot be loaded, or lacks a function, the
  # constants still exist and `Blazen::ControlPlane.available?` is false.
  module Native
    extend FFI::Library

    # The shared library: `BLAZEN_CABI_LIB`, else the copy in this gem.
    LIBRARY_PATH = ENV.fetch("BLAZEN_CABI_LIB") { File.expand_path("native/libblazen_cabi.so", __dir__) }

    @missing = []
    begin
      ffi_lib LIBRARY_PATH
      @load_error = nil
    rescue LoadError => e
      @load_error = e.message
    end

    class << self
      # Why the library is unusable, or nil.
      def load_problem
        return "cannot load #{LIBRARY_PATH}: #{@load_error}" if @load_error
        return "#{LIBRARY_PATH} lacks #{@missing.join(', ')}" unless @missing.empty?

        nil
      end

      # Attaches when the library is loaded; records a missing symbol
      # instead of failing the require.
      def attach_function(name, *args, **opts)
        return if @load_error

        super
      rescue FFI::NotFoundError
        @missing << name
      end
    end
  end
end

require_relative "native/generated"
