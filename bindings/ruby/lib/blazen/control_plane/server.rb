# frozen_string_literal: true

module Blazen
  module ControlPlane
    # A control plane running inside this process.
    class Server
      include OwnedHandle
      S = FFISupport
      private_constant :S

      # Starts a control plane listening on `bind` ("IP:PORT"; port 0 picks one).
      # With a block, yields the server and shuts it down when the block ends.
      # @param bind [String]
      # @param options [Hash] `bearer_token:`, `cert_path:`, `key_path:`, `ca_path:`,
      #   `store_url:` ("redis://HOST:PORT/DB": keep runs in Redis/Valkey so a new
      #   control plane on the same store resumes them) and `finished_ttl_ms:`
      #   (how long finished runs stay describable there; default one hour, 0 keeps them)
      # @yieldparam server [Server]
      # @return [Server, Object] the server, or the block's value
      # @raise [Blazen::ValidationError] for a bad address or option
      # @raise [Blazen::PeerError] when the store cannot be reached within 3 s
      #   (subkind "ControlPlaneStore")
      def self.start(bind = "127.0.0.1:0", **options)
        ControlPlane.ensure_available!
        fut = Native.blazen_controlplane_server_start_with_options(bind, S.json(options, null_as_nil: true))
        server = new(S.await(fut, :blazen_future_take_controlplane_server))
        return server unless block_given?

        begin
          yield server
        ensure
          server.shutdown
          server.close
        end
      end

      # @api private
      def initialize(ptr)
        adopt(ptr, :blazen_controlplane_server_free)
      end

      # @return [String] "http://IP:PORT" ("https://" with TLS)
      def endpoint = S.take_string(Native.blazen_controlplane_server_endpoint(ptr))

      # @return [Integer] the port it listens on
      def port = Native.blazen_controlplane_server_port(ptr)

      # Stops gracefully (open streams get a short grace); idempotent.
      # @return [nil]
      def shutdown
        Native.blazen_controlplane_server_shutdown(@ptr) if @ptr
        nil
      end
    end
  end
end
