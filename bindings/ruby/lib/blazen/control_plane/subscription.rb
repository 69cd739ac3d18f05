# frozen_string_literal: true

module Blazen
  module ControlPlane
    # A stream of run events delivered to a block on a library thread.
    # `cancel` and `close` return at once, even while the block runs (it
    # may finish; no new call starts); the block's resources are released
    # after its last call. An unclosed subscription is closed when garbage-collected.
    class Subscription
      include OwnedHandle
      S = FFISupport
      private_constant :S

      # What the library calls: the block, and an optional end notification.
      # @api private
      class Sink
        def initialize(block)
          @block = block
          @lock = Mutex.new
          @done = ConditionVariable.new
          @released = false
          @ender = nil
          @end = nil # [error] once the stream has ended
        end

        def event(*args)
          @block.call(Records.event(*args))
        end

        # The stream's end reaches the end block whichever comes first: an
        # end that arrives before the block is set is kept for it.
        def ended(error)
          ender = @lock.synchronize do
            @end = [error]
            @ender
          end
          ender&.call(error)
        end

        def ender=(block)
          ended = @lock.synchronize do
            @ender = block
            @end
          end
          block.call(ended.first) if ended
        end

        def callback_failed(exception)
          warn "blazen: exception in a subscription block: #{exception.class}: #{exception.message}"
        end

        def released
          @lock.synchronize do
            @released = true
            @done.broadcast
          end
        end

        # Waits until the library has released the sink (after its last call).
        def wait_released(timeout)
          deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
          @lock.synchronize do
            until @released
              left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
              return false if left <= 0

              @done.wait(@lock, left)
            end
          end
          true
        end
      end

      ON_EVENT = FFI::Function.new(:void, %i[pointer string string string uint64]) do |ud, run, type, data, ts|
        sink = S.lookup(ud)
        S.guard(sink) { sink&.event(run, type, data, ts) }
      end
      ON_CLOSE = FFI::Function.new(:void, [:pointer]) do |ud|
        sink = S.lookup(ud)
        S.guard(sink) { sink&.ended(nil) }
      end
      ON_ERROR = FFI::Function.new(:void, %i[pointer string]) do |ud, message|
        sink = S.lookup(ud)
        S.guard(sink) { sink&.ended(PeerError.new(message.dup, subkind: "ControlPlaneTransport")) }
      end

      # Opens a subscription; the block gets the sink vtable and out slots.
      # @api private
      def self.open(block)
        sink = Sink.new(block)
        vt = Native::BlazenRunEventSinkVTable.new
        vt[:user_data] = S.register(sink)
        vt[:drop_user_data] = S::DROP_USER_DATA
        vt[:on_event] = ON_EVENT
        vt[:on_close] = ON_CLOSE
        vt[:on_error] = ON_ERROR
        new(S.call_out { |o, e| yield(vt, o, e) }, sink)
      end

      # @api private
      def initialize(ptr, sink)
        adopt(ptr, :blazen_controlplane_subscription_free)
        @sink = sink
        @cancelled = false
      end

      # Calls the block once when the stream ends by itself: with nil after
      # the run's terminal event, or with a {Blazen::PeerError} when it broke
      # (at once, on the calling thread, if it has already ended). Not
      # called after {cancel}.
      # @yieldparam error [Blazen::PeerError, nil]
      # @return [self]
      def on_end(&block)
        @sink.ender = block
        self
      end

      # Stops delivery; idempotent. Returns at once.
      # @return [nil]
      def cancel
        return if @cancelled || @ptr.nil?

        @cancelled = true
        Native.blazen_controlplane_subscription_cancel(@ptr)
        nil
      end

      # Cancels, then releases the subscription; idempotent. Returns at once.
      # @return [nil]
      def close
        cancel
        super
      end

      # Waits until the library has made its last call to the block (after
      # {close}, or after the stream ended).
      # @param timeout [Numeric] seconds
      # @return [Boolean] false on timeout
      def wait_finished(timeout = 10)
        @sink.wait_released(timeout)
      end
    end
  end
end
