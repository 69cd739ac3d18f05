# frozen_string_literal: true

module Blazen
  module ControlPlane
    # Pointer work shared by the classes: strings, errors, futures and the
    # registry that turns `user_data` into Ruby objects. Not public API.
    module FFISupport
      module_function

      # Reads a library-owned `char *` and frees it; NULL gives nil.
      def take_string(ptr)
        return nil if ptr.nil? || ptr.null?

        ptr.read_string.force_encoding(Encoding::UTF_8)
      ensure
        Native.blazen_string_free(ptr) unless ptr.nil? || ptr.null?
      end

      # The Ruby exception for a `BlazenError *`, which it frees.
      def error_from(ptr)
        return InternalError.new("the library reported a failure without an error") if ptr.null?

        code = Native.blazen_error_kind(ptr)
        details = {}
        retry_after = Native.blazen_error_retry_after_ms(ptr)
        details[:retry_after_ms] = retry_after if retry_after >= 0
        details[:elapsed_ms] = Native.blazen_error_elapsed_ms(ptr) if code == Native::ERROR_KIND_TIMEOUT
        Error.for_kind(code).new(take_string(Native.blazen_error_message(ptr)),
                                 subkind: take_string(Native.blazen_error_subkind(ptr)), **details)
      ensure
        Native.blazen_error_free(ptr) unless ptr.null?
      end

      # Calls a status-returning function with `out` and `err` slots;
      # returns the out pointer or raises the library's error.
      def call_out
        out = FFI::MemoryPointer.new(:pointer)
        err = FFI::MemoryPointer.new(:pointer)
        return out.read_pointer if yield(out, err).zero?

        raise error_from(err.read_pointer)
      end

      # As {call_out} for functions with only an error slot.
      def call_status
        err = FFI::MemoryPointer.new(:pointer)
        raise error_from(err.read_pointer) unless yield(err).zero?

        nil
      end

      # Waits for a `BlazenFuture *` (freed here), then takes its result
      # with `take` (a `blazen_future_take_*` name); returns the out
      # pointer (nil for unit results). While a Fiber scheduler is set the
      # wait is `IO#wait_readable` on the future's descriptor, so other
      # fibers run; otherwise `blazen_future_wait`, which releases the VM lock.
      def await(future, take)
        wait(future)
        if take == :blazen_future_take_unit
          call_status { |err| Native.blazen_future_take_unit(future, err) }
        else
          call_out { |out, err| Native.public_send(take, future, out, err) }
        end
      ensure
        Native.blazen_future_free(future)
      end

      def wait(future)
        if Fiber.respond_to?(:scheduler) && Fiber.scheduler && !Fiber.blocking?
          io = IO.for_fd(Native.blazen_future_fd(future), autoclose: false)
          io.wait_readable until Native.blazen_future_poll(future) == 1
        else
          Native.blazen_future_wait(future)
        end
      end

      # JSON text for a Ruby value (nil stays NULL when `null_as_nil`).
      # The arguments of a connect function whose shape differs between
      # library builds: the 0.6.x build (`Native::SURFACE`) takes a bearer
      # token after them (nil here: a token goes through the options form).
      def surface_args(*args)
        Native::SURFACE == Native::SURFACE_V0_6 ? [*args, nil] : args
      end

      def json(value, null_as_nil: false)
        return nil if value.nil? && null_as_nil

        JSON.generate(value)
      end

      # Parses library JSON; nil stays nil.
      def parse(text)
        text.nil? ? nil : JSON.parse(text)
      end

      # ---- callbacks: `user_data` is a small integer key, never an object address

      REGISTRY = {}
      REGISTRY_LOCK = Mutex.new
      @next_key = 0

      def register(obj)
        REGISTRY_LOCK.synchronize do
          @next_key += 1
          REGISTRY[@next_key] = obj
          FFI::Pointer.new(@next_key)
        end
      end

      # Lookups and removals take no lock: `drop_user_data` may run inside a
      # finalizer (a collected subscription's `_free` releases its sink),
      # where Ruby forbids Mutex#synchronize, and a single Hash read or
      # delete is atomic under the VM lock anyway.
      def lookup(user_data)
        REGISTRY[user_data.address]
      end

      def unregister(user_data)
        REGISTRY.delete(user_data.address)
      end

      # How many callback targets the library may still call.
      def registered_count
        REGISTRY.size
      end

      # Runs a callback body; an exception never unwinds into C. It goes to
      # the target's `callback_failed` (or a warning) and `fallback` is returned.
      def guard(target, fallback = nil)
        yield
      rescue Exception => e # rubocop:disable Lint/RescueException
        if target.respond_to?(:callback_failed)
          target.callback_failed(e)
        else
          warn "blazen: exception in a callback: #{e.class}: #{e.message}"
        end
        fallback
      end

      # A library-made `BlazenError *` describing a Ruby exception.
      def error_for(exception)
        code = exception.kind_code if exception.is_a?(Blazen::Error)
        json_kind = (code && Blazen::Error.json_kind(code)) || "Workflow"
        fields = { "kind" => json_kind, "message" => exception.message.to_s }
        fields["subkind"] = exception.subkind if exception.is_a?(Blazen::Error) && exception.subkind
        Native.blazen_error_from_json(JSON.generate(fields))
      end

      DROP_USER_DATA = FFI::Function.new(:void, [:pointer]) do |ud|
        obj = unregister(ud)
        guard(obj) { obj&.released }
      end
    end

    # The life of a library handle held by a Ruby object: released by
    # `close` or, failing that, by the garbage collector (both through the
    # handle's `_free`, which never waits for a callback). Not public API.
    module OwnedHandle
      # Releases the handle now instead of at garbage collection;
      # idempotent.
      # @return [nil]
      def close
        return if @ptr.nil?

        ObjectSpace.undefine_finalizer(self)
        Native.public_send(@free_fn, @ptr)
        @ptr = nil
      end

      # True once {#close} has run.
      # @return [Boolean]
      def closed?
        @ptr.nil?
      end

      # A finalizer that frees the handle at `address` (it must not capture
      # the object itself).
      def self.releaser(free_fn, address)
        proc { Native.public_send(free_fn, FFI::Pointer.new(address)) }
      end

      private

      # Takes ownership of `ptr`, freed with `Native.<free_fn>`.
      def adopt(ptr, free_fn)
        @ptr = ptr
        @free_fn = free_fn
        ObjectSpace.define_finalizer(self, OwnedHandle.releaser(free_fn, ptr.address))
      end

      def ptr
        @ptr or raise ArgumentError, "the #{self.class.name.split('::').last.downcase} is closed"
      end
    end
  end
end
